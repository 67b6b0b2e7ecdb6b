"""One typed settings object, every default documented here and nowhere else.

Sources, later wins: built-in defaults < TOML file (``--config FILE`` or ``EMOSTREAM_CONFIG``) <
environment variables ``EMOSTREAM_<SECTION>_<FIELD>`` (e.g. ``EMOSTREAM_BUS_URL=redis://...``,
``EMOSTREAM_ASR_MODEL=whisper-base``). ``emostream config show`` prints the effective values.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

Positive = Annotated[float, msgspec.Meta(gt=0)]
"""A duration or amount that must be > 0."""
Count = Annotated[int, msgspec.Meta(ge=1)]
"""A count that must be >= 1."""
OffOrCount = Annotated[int, msgspec.Meta(ge=0)]
"""A count or duration where 0 means off / automatic."""
OffOrPositive = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
OffOrPort = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


def retention_in(table: dict[str, float], default: float, stream: str) -> float:
    """Seconds ``stream`` keeps entries: its own entry in ``table``; else, for a member of a family
    (``events:<room>``, not a ``:dead`` stream), the family's (a room keeps its events as long as the
    ``events`` stream, which is what SSE/WebSocket resume reads from); else ``default``."""
    if stream in table:
        return float(table[stream])
    family, sep, _ = stream.partition(":")
    if sep and not stream.endswith(":dead") and family in table:
        return float(table[family])
    return float(default)


class BusSettings(Section):
    url: str = "memory://"
    """``memory://`` (embedded, in-process) or ``redis://[:password@]host:port/db`` / ``rediss://`` (TLS)."""
    maxlen: Count = 10_000
    """Cap on every stream's length. Entries a consumer group has not read and acked are never trimmed:
    a producer to a stream full of them waits (``publish_timeout_s``) and then fails loudly. Streams
    without groups (events, dead letters) are rings: the oldest entry goes."""
    prefix: str = "emostream:"
    """Redis key prefix of every stream and blob (scope a shared Redis / an ACL user to ``emostream:*``)."""
    publish_timeout_s: Positive = 30.0
    """A publish to a stream full of un-acked entries waits this long, then fails (counted, logged)."""
    retention_s: OffOrPositive = 600.0
    """Entries older than this are trimmed (once every group acked them); 0 = keep until ``maxlen``.
    Intermediate streams (audio refs, transcripts, contexts, descriptions) are only needed while the
    stages work and a context worker rebuilds a room's history from them (:attr:`retention`)."""
    retention: dict[str, float] = msgspec.field(
        default_factory=lambda: {"events": 3600.0, "events:dead": 86_400.0}
    )
    """Per-stream retention in seconds, overriding ``retention_s`` (env: ``events=3600,rooms=600``)."""
    blob_ttl_s: Positive = 600.0
    """Raw media blobs (utterance audio, frame JPEGs) that no waiting message refers to (stored but not
    yet published, or read by no consumer group) expire after this many seconds."""
    blob_hold_s: Positive = 3600.0
    """A blob that messages still waiting for a consumer refer to is kept at least this long from their
    publish, renewed each time such a message is reclaimed; it is deleted as soon as the last consumer
    group that needs it acks. Must exceed the retry horizon (``max_deliveries`` x ``claim_idle_ms``);
    an utterance whose media is gone anyway is dead-lettered and announced (``dropped``)."""
    max_deliveries: Count = 5
    """After this many deliveries a message goes to ``<stream>:dead``."""
    claim_idle_ms: OffOrCount = 30_000
    """Un-acked messages idle this long are reclaimed from dead consumers (XAUTOCLAIM)."""
    block_ms: Count = 1_000
    """How long a consumer blocks waiting for new messages (also bounds how fast a stop is noticed)."""
    consumer_ttl_ms: OffOrCount = 3_600_000
    """Consumers idle this long with nothing pending (gone workers) are removed from groups; 0 = never."""
    max_message_bytes: Count = 1 << 20
    """Largest encoded message a stream accepts; bigger ones are refused (publish) or dead-lettered."""
    max_text_chars: Count = 10_000
    """Longest ``text`` field a stage accepts (a transcript); longer messages are dead-lettered."""
    max_blob_bytes: Count = 16 << 20
    """Largest media blob (utterance audio, frame JPEG) ``put_blob`` stores."""

    def retention_for(self, stream: str) -> float:
        """Retention of ``stream`` in seconds (0 = none): see :func:`retention_in`."""
        return retention_in(self.retention, self.retention_s, stream)


class StageSettings(Section):
    concurrency: Count = 2
    """Concurrent handlers per stage process."""
    metrics_port: OffOrPort = 0
    """Prometheus ``/metrics`` port for ``emostream worker`` (0 = off)."""
    metrics_host: str = "127.0.0.1"
    shutdown_grace_s: Positive = 10.0
    """On SIGTERM, in-flight work gets this long to finish before it is released un-acked."""
    claim_every_ms: OffOrCount = 0
    """How often a stage reclaims stale messages (0 = half of bus.claim_idle_ms, within 0.1-5 s)."""
    lag_every_s: Positive = 5.0
    """How often the consumer-lag gauge is refreshed."""
    log_format: Literal["kv", "json"] = "kv"
    """Log lines as ``kv`` (key=value) or ``json``."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Python logging level name: debug, info, warning, error."""


class StoreSettings(Section):
    home: str = "~/.cache/emostream"
    """Model store root: models live in ``<home>/models/<name>``."""
    manifest: str = ""
    """Manifest override (default: emostream/store/manifest.toml, shipped in the package)."""


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
    max_utterance_s: Positive = 15.0
    """Longer monologues are split at the quietest point (bounds memory and ASR cost)."""
    partial_on_pause: bool = True
    """When a pause begins, publish the utterance so far as PartialAudio: it is exactly the Utterance that
    follows if the pause lasts ``hangover_ms``, so ASR transcribes it during the hangover (speculative
    end of speech). Costs one extra ASR pass per pause that does not end the utterance."""
    pause_partial_ms: int = 96
    """Silence before that pause partial is published (at least ``tail_ms``). Later = fewer wasted passes
    on commas and breaths, but less of the hangover left to hide the ASR (and face) time in. Measured
    (bench asr, tiny.en, 40 MELD lines): 64 ms -> 2.1 speculative passes per utterance, 96 -> 2.18,
    128 -> 1.93, 160 -> 1.7; live (bench call, 2 participants, alternating runs) 96 ms took end of
    speech -> event p50 from ~600 to ~575 ms."""
    partial_every_ms: int = 0
    """Also publish partial audio of unbroken speech this often (0 = never). Each one costs an ASR pass
    when ``asr.early_partials`` is on and does not shorten end-of-speech latency; for consumers that
    want progressive audio."""


class AsrSettings(Section):
    """Speech recognition worker (emostream/workers/asr.py): faster-whisper / CTranslate2, one model per process."""

    model: str = "whisper-tiny.en"
    """Model store name: ``whisper-tiny.en`` (fast) or ``whisper-base`` (multilingual)."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto``."""
    compute_type: str = "auto"
    """CTranslate2 compute type; ``auto`` = int8 on CPU, float16 on CUDA."""
    cpu_threads: Count = 2
    language: str = "en"
    """Spoken language code (``en``); empty = detect per utterance (multilingual models only)."""
    beam_size: Count = 5
    """Beam search width. Measured (bench asr, tiny.en, 200 MELD lines, first voice set): 5 -> WER 17.6%, RTF 0.13;
    1 (greedy) -> WER 21.8%, RTF 0.10. Early partials hide most of the extra time."""
    hypotheses: Count = 2
    """Best beam hypotheses kept per utterance (at most the pass's beam width) and sent on as
    ``Transcript.hypotheses``; the text model averages its reading of them, weighted by their beam
    probability, so one guessed "." or "!" decides less. On espeak-ng speech of all of MELD dev (tiny.en):
    2 -> weighted-F1 52.23 against 51.18 for 1, and the replay of dialogues 0-19 46.03 / 47.26 (two CPU
    kinds) against 45.87 / 43.51, for ~3 ms more text model per utterance
    (models/emostream-text/MODEL_CARD.md, round 9). 1 = the best transcript alone."""
    busy_beam_size: OffOrCount = 0
    """Beam width of a pass that starts while other passes wait (several speakers stopping at once on
    a saturated box): a narrower beam there trades a little WER for the queue's wait. 0 = always
    ``beam_size``."""
    word_timestamps: bool = True
    """Word start/end times (one extra alignment pass over the encoder output)."""
    min_window_s: float = 10.0
    """Audio is zero-padded to at least this many seconds before encoding instead of Whisper's 30 s
    window (encoder cost scales with the window; below ~8 s tiny models start to loop). 30 = stock."""
    max_batch: Count = 1
    """Utterances waiting at the same time are transcribed as one batch of at most this many. On 2 CPU
    cores batching gained nothing (tiny.en: 0.19 s/utterance alone, 0.18 in pairs, 0.23 in fours) and
    makes the first one wait for the whole batch, so 1; raise it on a GPU."""
    workers: Count = 1
    """Model passes that may run at once (CTranslate2 workers, each with ``cpu_threads``): with 2, two
    speakers who stop together are transcribed side by side. tiny.en on 2 cores: one pass 240 ms, two at
    once 350 ms each (vs 240 + 480 in turn), but in ``bench call --participants 4`` (alternating runs)
    2 was no better than 1 (p95 1200 / 924 vs 781 / 975 ms): the cores are the limit. Raise it with
    cores to spare or on a GPU."""
    early_partials: bool = True
    """Transcribe partial audio while the person speaks; an Utterance whose audio equals a transcribed
    partial reuses its result (end of speech then costs only what is left of that pass)."""


class FramesSettings(Section):
    fps: Positive = 3.0
    """Frames per second sampled from the utterance window."""
    buffer_s: Positive = 20.0
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
    early_frames: bool = True
    """The pause partial carries the frames so far and fec analyses them during the VAD hangover (as ASR
    does the audio), so at end of speech only the newest frames are left: the face is ready about when
    the text is. Costs a second blob write of those frames per pause."""
    memo_frames: OffOrCount = 64
    """Analysed frames the face expert remembers (by JPEG content) to reuse at end of speech."""
    nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 5
    """Nice value added to the face threads: sharing cores with Whisper, the text (what the event
    waits for) goes first and the face uses the fusion deadline's slack (0: same priority)."""


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
    provider: str = "cpu"
    """ONNX Runtime execution provider of the sentence encoder: ``cpu``, ``cuda`` or ``tensorrt``."""
    trt_cache_dir: str = "~/.cache/emostream/trt"
    """TensorRT engine cache directory of the sentence encoder."""
    threads: Count = 1
    """ONNX Runtime intra-op threads of the sentence encoder (1: no spinning against other stages)."""


class ContextSettings(Section):
    model: str = "emostream-text-int8"
    """Text-teacher model in the store (runtime ONNX)."""
    max_tokens: Count = 128
    """Token budget of the dialogue-so-far input (left-truncated)."""
    history: Count = 32
    """Utterances of dialogue history kept per room."""
    provider: str = "cpu"
    """ONNX Runtime execution provider: ``cpu``, ``cuda`` or ``tensorrt``."""
    trt_cache_dir: str = "~/.cache/emostream/trt"
    """TensorRT engine cache directory (engines are built once per machine and model)."""
    threads: Count = 1
    """ONNX Runtime intra-op threads per model (1: no spinning against the other stages on small boxes)."""
    max_rooms: Count = 1024
    """Rooms whose history is kept; the least recently active room is forgotten beyond this."""
    room_idle_s: Positive = 600.0
    """A room silent this long (end of speech to end of speech, wall clock) starts a new dialogue: a
    reused room id never inherits an earlier conversation. Default = ``bus.retention_s``, so a restarted
    worker, which can only rebuild what is retained, decides like one that never stopped."""


class FusionSettings(Section):
    deadline_ms: OffOrCount = 150
    """Wait at most this long for the visual branch after the text is ready."""
    model: str = "emostream-fusion-int8"
    """Fusion head in the store; when absent, the text head decides alone."""
    visual_ttl_s: Positive = 30.0
    """Visual results with no matching text after this long are dropped (and counted)."""
    provider: str = "cpu"
    """ONNX Runtime execution provider of the fusion head: ``cpu``, ``cuda`` or ``tensorrt``."""
    trt_cache_dir: str = "~/.cache/emostream/trt"
    """TensorRT engine cache directory of the fusion head."""
    threads: int = 1
    """ONNX Runtime intra-op threads of the fusion head (a few small matmuls: 1 is plenty)."""
    mode: Literal["fused", "text", "face"] = "fused"
    """``fused`` (text + face), ``text`` (text alone: calls without video, ablations) or ``face``."""
    face_weight: float = 3.0
    """Late fusion (no head installed): weight w of a fully reliable face (emostream/late_fusion.py)."""
    smoothing: float = 0.1
    """Late fusion: floor eps mixed into both experts' probabilities before pooling."""
    face_min_reliability: float = 0.5
    """Late fusion: faces less reliable than this take no part."""
    face_full_reliability: float = 0.8
    """Late fusion: faces at least this reliable count with the full weight."""
    text_confident_from: float = 0.5
    """Late fusion: above this text top probability the face's weight shrinks (to 0 for a certain text)."""
    face_prior: list[float] = []
    """Late fusion: the face model's class prior over the 7 classes (empty: uniform)."""


class CallSettings(Section):
    """Live-call ingest (emostream/server/whip.py, tracks.py): limits, ICE, per-participant queues."""

    max_participants_room: int = 8
    """Publishers at once in one room; one more gets 429 with a one-line reason."""
    max_participants_server: int = 32
    """Publishers at once in this process (all rooms)."""
    max_sdp_bytes: int = 20_000
    """Largest SDP offer accepted (413 beyond): browser offers are 3-8 kB."""
    audio_jitter_packets: OffOrCount = 1
    """Opus packets aiortc's receiver holds back before decoding (aiortc's default, 4 = 80 ms, smooths
    playout; the analyzer plays nothing, so 1 is enough to keep packets in order and 60 ms come off end
    of speech -> event; raise it on links that reorder packets)."""
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
    port: Port = 8765
    secret: str = ""
    """HMAC secret for access tokens (``emostream token``); required for any non-local bind."""
    buffer: int = 1024
    """Live events buffered per subscriber connection; one that falls further behind gets a final
    ``lagged`` message (with its last id) and is disconnected, so a slow client never slows the rest."""
    heartbeat_s: float = 15.0
    """Idle SSE connections get a comment (WebSocket: a ping) this often; writes stuck for twice this
    long drop the connection."""
    drain_s: float = 5.0
    """On SIGTERM, subscribers get a final ``shutdown`` message and this long to be closed."""


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
        data.setdefault(section, {})[field] = _parse_env(key, raw, names[field])
    try:
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, env)) from None
    check_settings(settings)
    return settings


_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}


def _parse_env(key: str, raw: str, kind: Any) -> Any:
    """Environment strings for booleans and per-stream maps; everything else msgspec converts."""
    if kind is bool:
        word = raw.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ConfigError(f"invalid setting {key}={raw!r}: use true/false, 1/0 or yes/no")
    if "dict[" in str(kind):
        out: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in raw.split(","))):
            name, eq, value = item.partition("=")
            if not eq or not name.strip():
                raise ConfigError(f"invalid setting {key}={raw!r}: use NAME=VALUE[,NAME=VALUE...]")
            out[name.strip()] = value.strip()
        return out
    return raw


def _explain(exc: msgspec.ValidationError, env: dict[str, str]) -> str:
    """``Expected `int` >= 1 - at `$.stage.concurrency``` -> one line naming the setting and its env var."""
    text = str(exc)
    what, _, where = text.rpartition(" - at ")
    path = where.strip("`").removeprefix("$.")
    parts = path.split(".")
    if len(parts) < 2 or not what:
        return f"invalid setting: {text}"
    var = f"{ENV_PREFIX}{parts[0]}_{parts[1]}".upper().split("[")[0]
    source = f" ({var}={env[var]!r})" if var in env else ""
    return f"invalid setting {parts[0]}.{parts[1]}{source}: {what.replace('`', '').lower()}"


def check_settings(settings: Settings) -> None:
    """Cross-field rules msgspec cannot express; one ConfigError line naming the setting."""
    bus = settings.bus
    for stream, seconds in bus.retention.items():
        if seconds < 0:
            raise ConfigError(f"invalid setting bus.retention[{stream!r}] = {seconds}: use seconds >= 0")
    horizon_s = bus.max_deliveries * bus.claim_idle_ms / 1000
    if bus.blob_hold_s <= horizon_s:
        raise ConfigError(
            f"invalid setting bus.blob_hold_s = {bus.blob_hold_s:g}: media would expire before its retries "
            f"end (bus.max_deliveries x bus.claim_idle_ms = {horizon_s:g} s); raise it above {horizon_s:g}"
        )


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
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return repr(value)
