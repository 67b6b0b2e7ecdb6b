"""Message contracts: every message that crosses a stream.

Each message is a frozen msgspec Struct with a schema version ``v``. New fields always get defaults so
old producers stay readable (schema evolution); a message whose ``v`` is newer than this code knows is
rejected with :class:`SchemaError` and dead-lettered by the stage runtime. Encoders and decoders are
built once per type and reused (msgspec's fast path).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar, Literal, TypeVar

import msgspec

SCHEMA_VERSION = 2
"""Highest schema version this code reads and the one it writes (2: the face expert's evidence)."""

EMOTIONS: tuple[str, ...] = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
"""The 7 MELD classes, in the order every probability/logit vector uses."""

Emotion = Literal["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
Modality = Literal["text", "visual", "audio"]
VisualStatus = Literal["used", "absent", "late", "no_face", "expired", "unreliable", "disabled"]
"""How the face took part in a decision (``unreliable``: seen, but too unreliable to count)."""

_EVENT_NS = uuid.UUID("4f0c1c52-6c53-4f7e-9a53-5e3c0f6b9e11")


class SchemaError(ValueError):
    """A message could not be decoded into its contract (the reason is the message)."""


class SchemaVersionError(SchemaError):
    """The message was written by a newer emostream (schema version above SCHEMA_VERSION)."""


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """Base of every stream message. ``trace`` maps a stage name to the wall-clock second it published."""

    stream: ClassVar[str] = ""
    v: int = SCHEMA_VERSION
    trace: dict[str, float] = {}


class Keyed(Message, frozen=True, kw_only=True):
    """A message about one utterance of one speaker in one room."""

    room: str
    speaker: str
    utterance: int
    session: str = ""
    """The ingest session (one live participant track) that numbered the utterance: utterance numbers
    restart at 0 when a participant joins again or a room id is reused, so the session keeps those
    utterances apart from the earlier ones everywhere a cache, blob or event id is keyed by utterance.
    Empty for replays, which number utterances per run themselves."""

    @property
    def key(self) -> str:
        """Identity of the utterance this message is about (stable across redelivery)."""
        return utterance_key(self.room, self.speaker, self.utterance, self.session)


def utterance_key(room: str, speaker: str, utterance: int, session: str = "") -> str:
    """``room/speaker/n``, plus ``@session`` for a live ingest session."""
    return f"{room}/{speaker}/{utterance}@{session}" if session else f"{room}/{speaker}/{utterance}"


def event_id(room: str, speaker: str, utterance: int, session: str = "") -> str:
    """Deterministic event id: a redelivered utterance yields the same id (idempotent downstream)."""
    return str(uuid.uuid5(_EVENT_NS, utterance_key(room, speaker, utterance, session)))


def now() -> float:
    return time.time()


K = TypeVar("K", bound="Keyed")
IDENTITY = ("room", "speaker", "utterance", "session", "start", "end", "eos_at")
"""Fields a derived message takes from its parent (those both types have)."""


def derive(parent: Keyed, kind: type[K], **fields: Any) -> K:
    """A new ``kind`` message about the same utterance as ``parent``: the identity fields (room, speaker,
    utterance and, where both have them, start, end, eos_at) and the trace come from the parent;
    ``fields`` set the rest (and may override)."""
    names = _field_names(kind)
    base: dict[str, Any] = {n: getattr(parent, n) for n in IDENTITY if n in names and hasattr(parent, n)}
    base["trace"] = dict(parent.trace)
    return kind(**{**base, **fields})


_FIELDS: dict[type[Any], frozenset[str]] = {}


def _field_names(kind: type[Any]) -> frozenset[str]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = frozenset(f.name for f in msgspec.structs.fields(kind))
    return names


# ----------------------------------------------------------------------------------------- control


class RoomControl(Message, frozen=True, kw_only=True):
    """Room/session lifecycle: a participant joined or left, a room started or ended."""

    stream: ClassVar[str] = "rooms"
    room: str
    action: Literal["room_start", "room_end", "join", "leave"]
    participant: str = ""
    display_name: str = ""
    at: float = 0.0


# ------------------------------------------------------------------------------------------ speech


class SpeechStarted(Keyed, frozen=True, kw_only=True):
    """VAD saw speech begin, so later stages may warm up before the utterance ends."""

    stream: ClassVar[str] = "speech"
    start: float


class FrameRef(msgspec.Struct, frozen=True, kw_only=True):
    """One sampled video frame of the utterance window: a JPEG blob with its media time."""

    t: float
    blob: str


class PartialAudio(Keyed, frozen=True, kw_only=True):
    """Audio of an utterance still in progress (16 kHz mono float32 blob), for early ASR."""

    stream: ClassVar[str] = "partials"
    start: float
    end: float
    seq: int
    sample_rate: int = 16000
    audio: str = ""
    frames: list[FrameRef] = []
    """The pause partial's sampled frames so far (JPEG blobs): the face expert reads them during the
    hangover, so at end of speech only the last frames are new to it."""


class Utterance(Keyed, frozen=True, kw_only=True):
    """One finished utterance: its audio (16 kHz mono float32 blob) and sampled frames (JPEG blobs)."""

    stream: ClassVar[str] = "utterances"
    start: float
    end: float
    sample_rate: int = 16000
    audio: str = ""
    frames: list[FrameRef] = []
    text: str = ""
    """Known text (replay with gold text); when set the ASR stage passes it through."""
    eos_at: float = 0.0
    """Wall-clock second the segmenter decided speech had ended (latency origin)."""
    partial_seq: int = -1
    """The pause partial (``PartialAudio.seq``) whose audio this utterance repeats exactly, so ASR reuses
    that pass; -1: none. (Its own blob, never the partial's: an ack of the partial may delete that.)"""


class Word(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    start: float
    end: float
    word: str
    probability: float = 1.0


class Hypothesis(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One of the ASR's best readings of an utterance and its share of their beam probability."""

    text: str
    weight: float


class Transcript(Keyed, frozen=True, kw_only=True):
    stream: ClassVar[str] = "transcripts"
    start: float
    end: float
    text: str
    words: list[Word] = []
    language: str = "en"
    model: str = ""
    eos_at: float = 0.0
    hypotheses: list[Hypothesis] = []
    """The ASR's best distinct readings, best first (the first is ``text``), weights summing to 1
    (``asr.hypotheses``); empty when only ``text`` was kept or the text was given."""


# ------------------------------------------------------------------------------------------ visual


class FaceFrame(msgspec.Struct, frozen=True, kw_only=True):
    """Face analysis of one frame. ``box`` is (x, y, w, h) in pixels of the source frame."""

    t: float
    box: tuple[float, float, float, float]
    expression: list[float]
    """Expression probabilities over EMOTIONS (MELD order)."""
    blendshapes: dict[str, float] = {}
    head_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """(yaw, pitch, roll) in degrees."""
    crop: str = ""
    """Blob ref of the masked face crop (JPEG, background blacked out); empty when not kept."""
    score: float = 0.0
    """Key-frame score (expression confidence and change)."""
    quality: float = 0.0
    """Weight of this frame's reading in the face expert, in [0, 1] (v2)."""


class FaceReading(msgspec.Struct, frozen=True, kw_only=True):
    """The face expert's per-utterance reading (emostream/workers/face/expert.py), carried fec -> vlm -> fusion."""

    probs: list[float]
    """Quality-weighted mean expression probabilities over EMOTIONS."""
    reliability: float
    """In [0, 1]: share of frames with the speaker's face x quality of the frames read."""
    frames: int = 0
    """Speaker frames that contributed."""
    cues: dict[str, float] = {}
    """Top blendshapes (quality-weighted means), largest first."""


class KeyFrames(Keyed, frozen=True, kw_only=True):
    stream: ClassVar[str] = "keyframes"
    start: float
    end: float
    frames: list[FaceFrame] = []
    """Key frames in time order."""
    frames_seen: int = 0
    frames_bad: int = 0
    frames_expired: int = 0
    """Of ``frames_bad``, those whose media blob was gone when the face expert read it."""
    face_found: bool = False
    eos_at: float = 0.0
    face: FaceReading | None = None
    """The face expert's reading of the utterance (v2; None without a usable face)."""


class VisualDescription(Keyed, frozen=True, kw_only=True):
    stream: ClassVar[str] = "descriptions"
    text: str
    embedding: list[float] | None = None
    encoder: str = ""
    backend: str = ""
    face_found: bool = True
    confidence: float = 0.0
    """Confidence of the visual cue in [0, 1] (mean key-frame expression confidence)."""
    eos_at: float = 0.0
    face: FaceReading | None = None
    """The face expert's reading, passed on from KeyFrames (v2)."""
    media_expired: bool = False
    """No face because every frame's media was gone (TTL, or published before the fec group existed)."""


# ------------------------------------------------------------------------------------ text + fusion


class TextContext(Keyed, frozen=True, kw_only=True):
    stream: ClassVar[str] = "contexts"
    start: float
    end: float
    text: str
    embedding: list[float]
    logits: list[float]
    """Text-teacher logits over EMOTIONS."""
    model: str = ""
    eos_at: float = 0.0


class EmotionEvent(Keyed, frozen=True, kw_only=True):
    """The product's output: one emotion decision per utterance of a speaker."""

    stream: ClassVar[str] = "events"
    id: str
    start: float
    end: float
    label: Emotion
    probabilities: dict[str, float]
    """Probability per MELD class (keys are EMOTIONS)."""
    confidence: float
    modalities: list[Modality]
    visual_status: VisualStatus = "used"
    transcript: str = ""
    visual_description: str = ""
    model: str = ""
    latency_ms: dict[str, float] = {}
    """Per-stage latency in ms from end of speech (eos_at) to each stage's output, plus ``total``."""
    emitted_at: float = 0.0
    text_probs: dict[str, float] = {}
    """v2 evidence: the text expert's probabilities (what ``probabilities`` would be without the face)."""
    face_probs: dict[str, float] = {}
    """v2: the face expert's probabilities (empty without a usable face)."""
    face_reliability: float = 0.0
    """v2: the face reading's reliability in [0, 1]."""
    face_frames: int = 0
    """v2: speaker frames the face reading used."""
    face_cues: list[str] = []
    """v2: top facial cues, e.g. ``mouthSmileLeft 0.82``."""
    fusion: str = ""
    """v2: how ``probabilities`` were decided: ``text``, ``face``, ``late`` (log-linear pooling,
    emostream/late_fusion.py) or ``head`` (the trained fusion model); re-fuse from the fields above."""
    driver: str = ""
    """v2: which modality drove the decision, ``emostream.late_fusion.driver_of``: ``text``, ``face``,
    ``both`` or ``fused`` (empty from servers before it); what the room page and the table show."""


class Dropped(Keyed, frozen=True, kw_only=True):
    """An utterance's message was dead-lettered (expired media, too big, failed): what subscribers see
    instead of silence. The full record is ``dead_id`` in ``dead_stream``."""

    stream: ClassVar[str] = "dropped"
    source: str
    """The stream the message came from (e.g. ``utterances``)."""
    reason: str
    group: str = ""
    dead_stream: str = ""
    dead_id: str = ""
    at: float = 0.0


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """What the runtime writes to ``<stream>:dead``: the raw payload and why it was rejected."""

    stream: str
    id: str
    reason: str
    payload: bytes
    deliveries: int = 1
    group: str = ""
    at: float = 0.0


MESSAGE_TYPES: tuple[type[Message], ...] = (
    RoomControl,
    SpeechStarted,
    PartialAudio,
    Utterance,
    Transcript,
    KeyFrames,
    VisualDescription,
    TextContext,
    EmotionEvent,
    Dropped,
)
STREAM_TYPES: dict[str, type[Message]] = {t.stream: t for t in MESSAGE_TYPES}

# ---------------------------------------------------------------------------------------- codecs

M = TypeVar("M", bound=Message)
_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {}
_VERSION_PROBE = msgspec.msgpack.Decoder(dict[str, Any])


def encode(msg: msgspec.Struct) -> bytes:
    """Serialize a message for a stream (msgpack)."""
    return _ENCODER.encode(msg)


def decode(data: bytes, kind: type[M]) -> M:
    """Decode ``data`` into ``kind``; raise SchemaError with a one-line reason on garbage or new versions."""
    dec = _DECODERS.get(kind)
    if dec is None:
        dec = _DECODERS[kind] = msgspec.msgpack.Decoder(kind)
    try:
        return dec.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        version = _probe_version(data)
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{kind.__name__} has schema version {version}, this emostream reads up to "
                f"{SCHEMA_VERSION}: upgrade the consumer"
            ) from None
        raise SchemaError(f"not a valid {kind.__name__}: {exc}") from None


def check_version(msg: Message) -> None:
    if msg.v > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{type(msg).__name__} has schema version {msg.v}, this emostream reads up to "
            f"{SCHEMA_VERSION}: upgrade the consumer"
        )


def decode_checked(data: bytes, kind: type[M]) -> M:
    """Decode and refuse versions newer than SCHEMA_VERSION (even if the fields happen to fit)."""
    msg = decode(data, kind)
    check_version(msg)
    return msg


def _probe_version(data: bytes) -> int | None:
    try:
        v = _VERSION_PROBE.decode(data).get("v")
    except (msgspec.DecodeError, AttributeError, ValueError):  # ValueError: invalid UTF-8 keys
        return None
    return v if isinstance(v, int) else None


_JSON_ENCODER = msgspec.json.Encoder()


def to_json(msg: msgspec.Struct) -> bytes:
    """JSON form for subscribers (SSE, CLI, JSONL files)."""
    return _JSON_ENCODER.encode(msg)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of EmotionEvent, exported for subscribers (``emostream schema events``)."""
    return msgspec.json.schema(EmotionEvent)
