"""One typed settings object, every default documented here and nowhere else.

Sources, later wins: built-in defaults < TOML file (``--config FILE`` or ``EMOSTREAM_CONFIG``) <
environment variables ``EMOSTREAM_<SECTION>_<FIELD>`` (e.g. ``EMOSTREAM_BUS_URL=redis://...``,
``EMOSTREAM_ASR_MODEL=whisper-base``). ``emostream config show`` prints the effective values.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class BusSettings(Section):
    url: str = "memory://"
    """``memory://`` (embedded, in-process) or ``redis://[:password@]host:port/db`` / ``rediss://`` (TLS)."""
    maxlen: int = 10_000
    """Approximate cap on every stream's length (Redis MAXLEN ~; in-memory bound)."""
    blob_ttl_s: float = 120.0
    """Raw media blobs (utterance audio, frame JPEGs) expire after this many seconds."""
    max_deliveries: int = 5
    """After this many deliveries a message goes to ``<stream>:dead``."""
    claim_idle_ms: int = 30_000
    """Un-acked messages idle this long are reclaimed from dead consumers (XAUTOCLAIM)."""
    block_ms: int = 1_000
    """How long a consumer blocks waiting for new messages (also bounds how fast a stop is noticed)."""
    consumer_ttl_ms: int = 3_600_000
    """Consumers idle this long with nothing pending (gone workers) are removed from groups; 0 = never."""
    publish_timeout_s: float = 30.0
    """In-memory bus: a publish to a stream full of un-acked entries waits this long, then fails."""


class StageSettings(Section):
    concurrency: int = 2
    """Concurrent handlers per stage process."""
    metrics_port: int = 0
    """Prometheus ``/metrics`` port for ``emostream worker`` (0 = off)."""
    metrics_host: str = "127.0.0.1"
    shutdown_grace_s: float = 10.0
    """On SIGTERM, in-flight work gets this long to finish before it is released un-acked."""
    claim_every_ms: int = 0
    """How often a stage reclaims stale messages (0 = half of bus.claim_idle_ms, within 0.1-5 s)."""
    lag_every_s: float = 5.0
    """How often the consumer-lag gauge is refreshed."""
    log_format: Literal["kv", "json"] = "kv"
    """Log lines as ``kv`` (key=value) or ``json``."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Python logging level name: debug, info, warning, error."""


class StoreSettings(Section):
    home: str = "~/.cache/emostream"
    """Model store root: models live in ``<home>/models/<name>``."""
    manifest: str = ""
    """Manifest override (default: the manifest shipped in models/manifest.toml)."""


class VadSettings(Section):
    """Speech segmentation (emostream/ingest/segmenter.py): Silero VAD decisions per 32 ms window."""

    threshold: float = 0.5
    """Speech probability above which a 32 ms chunk counts as speech."""
    off_threshold: float = 0.35
    """Probability below which a chunk counts as silence (hysteresis: in between keeps the current state)."""
    min_speech_ms: int = 250
    """Shorter bursts are ignored (clicks, coughs)."""
    hangover_ms: int = 400
    """Silence needed after speech before the utterance is closed (end-of-speech delay)."""
    preroll_ms: int = 200
    """Audio kept before the detected start, so first phonemes are not cut."""
    tail_ms: int = 64
    """Audio kept after the last speech chunk. The utterance ends there, and after this much silence the
    segmenter publishes the pause partial (see ``partial_on_pause``)."""
    max_utterance_s: float = 15.0
    """Longer monologues are split at the quietest point (bounds memory and ASR cost)."""
    partial_on_pause: bool = True
    """When a pause begins, publish the utterance so far as PartialAudio: it is exactly the Utterance that
    follows if the pause lasts ``hangover_ms``, so ASR transcribes it during the hangover (speculative
    end of speech). Costs one extra ASR pass per pause that does not end the utterance."""
    pause_partial_ms: int = 128
    """Silence before that pause partial is published (at least ``tail_ms``). Later = fewer wasted passes
    on commas and breaths, but less of the hangover left to hide the ASR time in. Measured (bench asr,
    tiny.en, 40 MELD lines): 64 ms -> 2.1 speculative passes per utterance, 160 ms -> 1.7."""
    partial_every_ms: int = 0
    """Also publish partial audio of unbroken speech this often (0 = never). Each one costs an ASR pass
    when ``asr.early_partials`` is on and does not shorten end-of-speech latency; for consumers that
    want progressive audio."""


class AsrSettings(Section):
    """Speech recognition worker (workers/asr.py): faster-whisper / CTranslate2, one model per process."""

    model: str = "whisper-tiny.en"
    """Model store name: ``whisper-tiny.en`` (fast) or ``whisper-base`` (multilingual)."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto``."""
    compute_type: str = "auto"
    """CTranslate2 compute type; ``auto`` = int8 on CPU, float16 on CUDA."""
    cpu_threads: int = 2
    language: str = "en"
    """Spoken language code (``en``); empty = detect per utterance (multilingual models only)."""
    beam_size: int = 5
    """Beam search width. Measured (bench asr, tiny.en, 200 MELD lines, first voice set): 5 -> WER 17.6%, RTF 0.13;
    1 (greedy) -> WER 21.8%, RTF 0.10. Early partials hide most of the extra time."""
    word_timestamps: bool = True
    """Word start/end times (one extra alignment pass over the encoder output)."""
    min_window_s: float = 10.0
    """Audio is zero-padded to at least this many seconds before encoding instead of Whisper's 30 s
    window (encoder cost scales with the window; below ~8 s tiny models start to loop). 30 = stock."""
    max_batch: int = 1
    """Utterances waiting at the same time are transcribed as one batch of at most this many. On 2 CPU
    cores batching gained nothing (tiny.en: 0.19 s/utterance alone, 0.18 in pairs, 0.23 in fours) and
    makes the first one wait for the whole batch, so 1; raise it on a GPU."""
    early_partials: bool = True
    """Transcribe partial audio while the person speaks; an Utterance whose audio equals a transcribed
    partial reuses its result (end of speech then costs only what is left of that pass)."""


class FramesSettings(Section):
    fps: float = 3.0
    """Frames per second sampled from the utterance window."""
    buffer_s: float = 20.0
    """Ring buffer of recent video per participant."""
    jpeg_quality: int = 85
    max_side: int = 640
    """Frames are downscaled so their longer side is at most this many pixels."""


class FecSettings(Section):
    backend: str = "litert"
    """Expression classifier: ``litert`` (FER tflite, default) or ``deepface`` (needs local weights)."""
    top_k: int = 4
    """Key frames kept per utterance."""
    mask_background: bool = True
    """Key-frame crops keep only the face oval; the background is blacked out (spatial masking)."""
    max_faces: int = 4
    """Faces detected per frame; the speaker's face is chosen among them (largest, most consistent track)."""
    crop_size: int = 224
    """Side in pixels of the square key-frame crop handed to the VLM."""
    threads: int = 2
    """Landmarker instances analysing an utterance's frames in parallel (about one per CPU core to spare)."""


class VlmSettings(Section):
    backend: str = "landmarks"
    """``landmarks`` (CPU, ms), ``openai`` (OpenAI-compatible server) or ``transformers`` (Qwen2.5-VL)."""
    encoder: str = "all-MiniLM-L6-v2"
    """Sentence encoder for description embeddings (384-d; ``all-mpnet-base-v2`` for 768-d)."""
    openai_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = "qwen2.5-vl-7b-instruct"
    openai_api_key: str = ""
    timeout_s: float = 10.0
    retries: int = 2
    transformers_model: str = ""
    """Local path or hub id of a Qwen2.5-VL checkpoint for the ``transformers`` backend."""
    max_sentences: int = 3


class ContextSettings(Section):
    model: str = "emostream-text-int8"
    """Text-teacher model in the store (runtime ONNX)."""
    max_tokens: int = 128
    """Token budget of the dialogue-so-far input (left-truncated)."""
    history: int = 32
    """Utterances of dialogue history kept per room."""
    provider: str = "cpu"
    """ONNX Runtime execution provider: ``cpu``, ``cuda`` or ``tensorrt``."""
    trt_cache_dir: str = "~/.cache/emostream/trt"
    """TensorRT engine cache directory (engines are built once per machine and model)."""
    threads: int = 1
    """ONNX Runtime intra-op threads per model (1: no spinning against the other stages on small boxes)."""
    max_rooms: int = 1024
    """Rooms whose history is kept; the least recently active room is forgotten beyond this."""


class FusionSettings(Section):
    deadline_ms: int = 150
    """Wait at most this long for the visual branch after the text is ready."""
    model: str = "emostream-fusion-int8"
    """Fusion head in the store; when absent, the text head decides alone."""
    visual_ttl_s: float = 30.0
    """Visual results with no matching text after this long are dropped (and counted)."""


class CallSettings(Section):
    """Live-call ingest (emostream/server/whip.py, tracks.py): limits, ICE, per-participant queues."""

    max_participants_room: int = 8
    """Publishers at once in one room; one more gets 429 with a one-line reason."""
    max_participants_server: int = 32
    """Publishers at once in this process (all rooms)."""
    max_sdp_bytes: int = 20_000
    """Largest SDP offer accepted (413 beyond): browser offers are 3-8 kB."""
    require_video: bool = False
    """Refuse offers without a video m-line (422); by default audio-only publishers are fine."""
    ice_servers: str = ""
    """Comma-separated STUN/TURN URLs (``stun:host:3478,turn:host:3478?transport=udp``) used by the server's peer
    connections and advertised to publishers in ``Link: rel="ice-server"`` headers. Empty: host
    candidates only (same network, or a container with host networking)."""
    turn_username: str = ""
    turn_credential: str = ""
    """Credentials sent with every ``turn:``/``turns:`` URL above."""
    audio_queue: int = 250
    """Decoded audio frames (20 ms each) buffered per participant before the oldest are dropped."""
    video_queue: int = 8
    """Decoded video frames buffered per participant; video is dropped first under overload."""
    session_idle_s: float = 30.0
    """A session whose peer connection failed or never connected in this long is closed."""


class ApiSettings(Section):
    host: str = "127.0.0.1"
    """Bind address: localhost by default (emotion analytics about people)."""
    port: int = 8765
    secret: str = ""
    """HMAC secret for access tokens (``emostream token``); required for any non-local bind."""


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bus: BusSettings = msgspec.field(default_factory=BusSettings)
    stage: StageSettings = msgspec.field(default_factory=StageSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    vad: VadSettings = msgspec.field(default_factory=VadSettings)
    asr: AsrSettings = msgspec.field(default_factory=AsrSettings)
    frames: FramesSettings = msgspec.field(default_factory=FramesSettings)
    fec: FecSettings = msgspec.field(default_factory=FecSettings)
    vlm: VlmSettings = msgspec.field(default_factory=VlmSettings)
    context: ContextSettings = msgspec.field(default_factory=ContextSettings)
    fusion: FusionSettings = msgspec.field(default_factory=FusionSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    call: CallSettings = msgspec.field(default_factory=CallSettings)

    @property
    def home(self) -> Path:
        return Path(os.path.expanduser(self.store.home))


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what to do."""


ENV_PREFIX = "EMOSTREAM_"
_NOT_SETTINGS = {"EMOSTREAM_CONFIG", "EMOSTREAM_HOME"}


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build the effective settings: defaults, then the TOML file, then ``EMOSTREAM_*`` variables."""
    env = dict(os.environ if env is None else env)
    data: dict[str, Any] = {}
    path = path or env.get("EMOSTREAM_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found: pass an existing TOML file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if "EMOSTREAM_HOME" in env:
        data.setdefault("store", {})["home"] = env["EMOSTREAM_HOME"]
    sections = {f.name: f.type for f in msgspec.structs.fields(Settings)}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in _NOT_SETTINGS:
            continue
        section, _, field = key[len(ENV_PREFIX) :].lower().partition("_")
        if section not in sections or not field:
            raise ConfigError(f"unknown setting {key}: sections are {', '.join(sections)}")
        names = {f.name: f.type for f in msgspec.structs.fields(sections[section])}
        if field not in names:
            raise ConfigError(f"unknown setting {key}: {section} has {', '.join(names)}")
        data.setdefault(section, {})[field] = _parse_env(raw, names[field])
    try:
        return msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from None


def _parse_env(raw: str, kind: Any) -> Any:
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return raw


SECRET_FIELDS = {"secret", "openai_api_key", "turn_credential"}


def settings_toml(settings: Settings, redact: bool = True) -> str:
    """Render settings as TOML (for ``emostream config show``); secrets and URL passwords redacted."""
    lines: list[str] = []
    for name, section in msgspec.structs.asdict(settings).items():
        lines.append(f"[{name}]")
        for key, value in msgspec.structs.asdict(section).items():
            if redact and key in SECRET_FIELDS and value:
                value = "***"
            elif redact and key == "url" and isinstance(value, str):
                value = redact_url(value)
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def redact_url(url: str) -> str:
    """``redis://:pw@host`` -> ``redis://:***@host`` (for logs and ``config show``)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    return repr(value)
