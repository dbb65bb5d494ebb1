"""Configuration: pydantic models read from a TOML file plus ``STREAM_GATE__…`` overrides.

Precedence, highest first: environment variables (``STREAM_GATE__REDIS__URL=…``), the
TOML file given with ``--config``, the built-in defaults of the command (``demo`` has its
own). Unknown keys and bad values stop start-up with the key path and the reason, so a
typo in a camera file never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import redis.connection
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from stream_gate.errors import ConfigError
from stream_gate.log import redact_url


def _no_bool_for_numbers(model: type[BaseModel], name: str | None, value: Any) -> Any:
    """``true``/``false`` where a number is asked for is a mistake, not 1/0."""
    field = model.model_fields.get(name or "")
    if isinstance(value, bool) and field is not None:
        kinds = {field.annotation}
        for arg in get_args(field.annotation):  # int | None, Annotated[int, ...] | None
            kinds |= {arg, *get_args(arg)[:1]}
        if bool not in kinds and kinds & {int, float}:
            raise ValueError("must be a number, not true/false")
    return value


class _Strict(BaseModel):
    """Unknown keys are errors, numbers are finite and never booleans: sections and the
    per-stream overrides alike."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return _no_bool_for_numbers(cls, info.field_name, value)


class _Section(_Strict):
    """Base for config sections: also validated when a value is set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DecodeConfig(_Section):
    queue_size: int = Field(default=8, ge=1, le=1024, description=(
        "Frames buffered per stream between decoding and detection."))
    open_timeout_s: float = Field(default=10.0, gt=0, description=(
        "Seconds to wait for a camera to answer when opening."))
    read_timeout_s: float = Field(default=10.0, gt=0, description=(
        "Seconds to wait for each read from a camera."))
    reconnect_min_s: float = Field(default=0.5, gt=0, description=(
        "First reconnect delay; it doubles up to reconnect_max_s (±20 % jitter)."))
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay.")
    threads: int = Field(default=0, ge=0, le=64, description=(
        "Decoder threads per stream (0: FFmpeg's choice)."))
    rtsp_transport: Literal["tcp", "udp"] = Field(default="tcp", description=(
        "RTSP over tcp (robust) or udp (lower latency, loses packets)."))
    hwaccel: Literal["none", "cuda"] = Field(default="none", description=(
        "cuda: decode on the GPU (NVDEC), falling back to the CPU; none: the CPU."))
    loop_speed: float = Field(default=1.0, ge=0, le=100, description=(
        "Playback speed of loop:// sources (1: the file's own rate; 0: as fast as possible)."))
    skip_nonref: bool = Field(default=True, description=(
        "Skip decoding B-frames when a stream is analysed at half its rate or less."))
    stall_s: float = Field(default=10.0, gt=0, description=(
        "A live camera that delivers no picture this long is reconnected."))
    shutdown_grace_s: float = Field(default=15.0, gt=0, description=(
        "On SIGTERM/SIGINT, exit (status 3) if flushing takes longer than this."))
    drop_oldest: bool | None = Field(default=None, description=(
        "Full queue: drop the oldest frame (true) or wait (false); unset: live sources drop, "
        "files wait."))
    max_pixels: int = Field(default=3840 * 2160, ge=64 * 64, le=2**40, description=(
        "Largest frame (width × height) accepted; a larger stream is refused."))

    @model_validator(mode="after")
    def _backoff_grows(self) -> DecodeConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s ({self.reconnect_min_s:g}) must be <= "
                             f"reconnect_max_s ({self.reconnect_max_s:g})")
        return self


class DetectConfig(_Section):
    model: Literal["centerface", "yunet"] = Field(default="centerface", description=(
        "Face detector: centerface (bundled) or yunet (from model_path)."))
    model_path: Path | None = Field(default=None, description=(
        "YuNet ONNX file with dynamic input (detect.model = \"yunet\")."))
    precision: Literal["auto", "int8", "fp32"] = Field(default="auto", description=(
        "CenterFace's frame-wide pass in int8 (our quantised copy) or fp32; auto: int8 where "
        "the CPU has VNNI."))
    max_side: int = Field(default=0, ge=0, le=4096, description=(
        "Longest side of the frame-wide detector input (0: from min_face_px)."))
    score_threshold: float = Field(default=0.3, ge=0.01, le=1.0, description=(
        "Lowest detector confidence kept."))
    nms_iou: float = Field(default=0.3, gt=0.0, le=1.0, description=(
        "Overlap above which two detections are the same face."))
    min_face_px: float = Field(default=16.0, ge=0, description=(
        "Smallest face (shorter box side, frame px) passed on."))
    batch_size: int = Field(default=4, ge=1, le=256, description=(
        "Frames (from all cameras together) per detector call."))
    max_wait_ms: float = Field(default=20.0, ge=0, le=10_000, description=(
        "Longest wait for a batch to fill once its first frame is in."))
    threads: int = Field(default=0, ge=0, le=256, description=(
        "onnxruntime intra-op threads for the detector (0: all cores)."))
    refine_px: int = Field(default=96, ge=0, le=512, multiple_of=32, description=(
        "Side of the full-resolution re-detection crops (0: no refinement)."))
    refine_small_px: int = Field(default=192, ge=32, le=512, multiple_of=32, description=(
        "Native window (original px) around faces of 32 px up to refine_px / 2."))
    every: int = Field(default=3, ge=1, le=25, description=(
        "Frame-wide detection every k-th analysed frame; tracked faces refined between."))
    every_still: int = Field(default=15, ge=1, le=250, description=(
        "How long frame-wide detection may wait while nothing moves (= every: no check)."))
    max_motion: float = Field(default=0.5, gt=0, description=(
        "A tracked face moving more than this fraction of its size per frame forces frame-wide "
        "detection."))

    @model_validator(mode="after")
    def _yunet_needs_a_file(self) -> DetectConfig:
        if self.model == "yunet" and self.model_path is None:
            raise ValueError('model = "yunet" needs model_path: the YuNet ONNX file '
                             "(stream-gate ships no YuNet weights)")
        return self

    @field_validator("max_side")
    @classmethod
    def _auto_or_at_least_64(cls, v: int) -> int:
        if 0 < v < 64:
            raise ValueError("must be 0 (auto) or from 64 to 4096")
        return v

    @model_validator(mode="after")
    def _every_needs_refine(self) -> DetectConfig:
        if self.every > 1 and self.refine_px == 0:
            raise ValueError("every > 1 needs refine_px > 0 (the frames between frame-wide "
                             "detections are re-detected around the tracked faces)")
        return self

    @model_validator(mode="after")
    def _still_not_sooner(self) -> DetectConfig:
        if self.every_still < self.every:
            raise ValueError(f"every_still ({self.every_still}) must be >= every ({self.every}): "
                             "it is how long a view without motion may wait; = every turns "
                             "the motion check off")
        return self


class RuntimeConfig(_Section):
    engine: Literal["onnxruntime", "tensorrt", "torch"] = Field(default="onnxruntime", description=(
        "Inference engine: onnxruntime (CPU), tensorrt (NVIDIA GPU) or torch."))
    ort_spin: bool = Field(default=False, description=(
        "Let onnxruntime's idle worker threads busy-wait (off: the cores go to decoding)."))
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description=(
        "torch engine: auto (CUDA when PyTorch sees a GPU), cpu or cuda."))
    half: bool = Field(default=True, description="torch engine on CUDA: run the models in fp16.")
    cuda_graphs: bool = Field(default=True, description=(
        "torch engine on CUDA: power-of-two batch buckets, one CUDA graph each."))
    trt_int8: bool = Field(default=False, description=(
        "tensorrt: CenterFace's frame-wide pass on its calibrated int8 engine."))
    engine_cache: Path = Field(default=Path("~/.cache/stream-gate/engines"), description=(
        "Where built TensorRT engines are kept."))


class TrackConfig(_Section):
    high_score: float = Field(default=0.5, ge=0.0, le=1.0, description=(
        "Detections at or above this score are matched first."))
    new_track_score: float = Field(default=0.6, ge=0.0, le=1.0, description=(
        "A new track starts only from a detection this confident."))
    match_iou: float = Field(default=0.2, gt=0.0, le=1.0, description=(
        "Minimum IoU of a prediction and a high-score detection to match."))
    low_match_iou: float = Field(default=0.5, gt=0.0, le=1.0, description=(
        "Minimum IoU for the low-score second matching stage."))
    buffer: float = Field(default=0.6, ge=0, le=2, description=(
        "Boxes grown by this fraction on each side before IoU matching."))
    min_hits: int = Field(default=3, ge=1, le=1000, description=(
        "Matches before a track is confirmed (only confirmed tracks emit)."))
    max_age_s: float = Field(default=1.0, gt=0, description=(
        "Seconds a confirmed track survives unseen before it ends."))


SHIPPED_SCORERS = ("cr-fiqa-s-v2", "cr-fiqa-s", "heuristic")  # stream_gate/models, built in


class ScoreConfig(_Section):
    model: str = Field(default="cr-fiqa-s-v2", description=(
        "Quality scorer: cr-fiqa-s-v2 (quality and an appearance signature), cr-fiqa-s "
        "(v1, quality alone), heuristic, or a path to a model manifest .json."))
    threads: int = Field(default=0, ge=0, le=256, description=(
        "onnxruntime threads for the quality model (0: all cores)."))
    min_det_score: float = Field(default=0.3, ge=0.0, le=1.0, description=(
        "Gate: minimum detector confidence."))
    min_eye_px: float = Field(default=4.0, ge=0, description=(
        "Gate: minimum distance between the eyes in frame pixels."))
    max_yaw_deg: float = Field(default=90.0, gt=0, le=90, description=(
        "Gate: largest head yaw (degrees, from landmarks) still scored."))
    max_per_track_hz: float = Field(default=0.0, ge=0, description=(
        "Score each person at most this often per second of video (0: every frame)."))

    @field_validator("model")
    @classmethod
    def _model_name(cls, v: str) -> str:
        if v not in SHIPPED_SCORERS and not v.endswith(".json"):
            raise ValueError(f"must be one of {', '.join(SHIPPED_SCORERS)} or a path to a "
                             "model manifest .json")
        return v


class SelectConfig(_Section):
    policy: Literal["track_end", "improving"] = Field(default="track_end", description=(
        "track_end: emit when the track ends; improving: emit early and on improvement."))
    top_k: int = Field(default=1, ge=1, le=100, description="Crops kept and emitted per person.")
    min_quality: float = Field(default=0.0, ge=0, le=100, description=(
        "Crops scoring below this (0–100) are never emitted."))
    improve_delta: float = Field(default=5.0, ge=0, le=100, description=(
        "Points a crop must beat the last emitted one by to be emitted again."))
    max_wait_s: float = Field(default=0.0, ge=0, description=(
        "Longest a confirmed person is held before a first emission (0: no limit)."))
    size_weight: float = Field(default=0.0, ge=0, le=100, description=(
        "Points a crop gains, when one person's crops are ranked, per doubling of its "
        "face's area (0: quality alone; 20-40 picked better crops on real video)."))
    consensus_weight: float = Field(default=3.0, ge=0, le=100, description=(
        "Points a crop gains, when one person's crops are ranked, per percent of its "
        "agreement with the person's other crops (0: quality alone; 3, chosen on real "
        "video, picks far better crops; track_end ranks against the whole track, improving "
        "against the track so far and sends a crop again when it becomes more typical)."))


def check_redis_url(v: str) -> str:
    """``v`` is ``embedded`` or a Redis URL redis-py accepts (ValueError saying why not)."""
    if v != "embedded" and not re.match(r"^(redis|rediss|unix)://", v):
        raise ValueError("must be 'embedded' or start with redis://, rediss:// or unix://")
    if v.startswith(("redis://", "rediss://")):
        parts = urllib.parse.urlsplit(v)
        try:
            port = parts.port  # raises ValueError when not a number or out of range
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        if port == 0:
            raise ValueError("the port must be a number from 1 to 65535")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise ValueError("the database (the path after the port) must be a number")
        try:
            redis.connection.parse_url(v)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ValueError(f"not a Redis URL redis-py accepts: {exc}") from None
    return v


class RedisConfig(_Section):
    url: str = Field(default="redis://127.0.0.1:6379/0", description=(
        "redis://, rediss:// (TLS), unix:// or embedded (a private server)."))
    key: str = Field(default="stream_gate:crops", min_length=1, description=(
        "Stream key; may contain {stream_id}."))
    maxlen: int = Field(default=100_000, ge=1, le=2**63 - 1, description=(
        "Approximate stream length cap (XADD MAXLEN ~)."))
    jpeg_quality: int = Field(default=95, ge=1, le=100, description="JPEG quality of the crops.")
    connect_timeout_s: float = Field(default=3.0, gt=0, description=(
        "Seconds to wait for Redis to connect or answer."))
    spool_dir: Path | None = Field(default=None, description=(
        "Where entries wait on disk while Redis is unreachable (unset: in memory)."))
    spool_max_entries: int = Field(default=100_000, ge=1, description=(
        "Most entries kept in the spool; beyond it the oldest is dropped."))
    username: str | None = Field(default=None, description=(
        "ACL user (Redis 6+); unset: the URL's, else the default user."))
    password: SecretStr | None = Field(default=None, description=(
        "Password (also STREAM_GATE__REDIS__PASSWORD); never logged."))
    password_file: FilePath | None = Field(default=None, description=(
        "File whose first line is the password (a mounted secret)."))
    ssl_ca_certs: FilePath | None = Field(default=None, description=(
        "rediss://: the CA certificate(s) that signed the server's certificate."))
    ssl_certfile: FilePath | None = Field(default=None, description=(
        "rediss://: this client's certificate, where the server checks clients."))
    ssl_keyfile: FilePath | None = Field(default=None, description=(
        "rediss://: the key of ssl_certfile."))

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        return check_redis_url(v)

    @model_validator(mode="after")
    def _one_password_tls_needs_rediss(self) -> RedisConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        tls = [k for k in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if getattr(self, k)]
        if tls and not self.url.startswith("rediss://"):
            raise ValueError(f"{', '.join(tls)} need a rediss:// url (Redis over TLS)")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self

    def secret(self) -> str | None:
        """The password, from ``password`` or the first line of ``password_file``."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            try:
                lines = self.password_file.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"redis.password_file: cannot read {self.password_file}: "
                                  f"{exc.strerror}") from None
            return lines[0] if lines else ""
        return None


class ClusterConfig(_Section):
    enabled: bool = Field(default=False, description=(
        "Share this file's [[streams]] with the other workers of the group."))
    url: str | None = Field(default=None, description=(
        "Coordination Redis (unset: redis.url); redis.* credentials and TLS apply."))
    group: str = Field(default="stream-gate", pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description=(
        "Group name; workers of one group share its cameras."))
    member_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,128}$",
                                  description="This worker's id (unset: host name + pid).")
    weight: int = Field(default=1, ge=1, le=1000, description=(
        "Cameras this worker can carry, relative to the others (bench --capacity)."))
    heartbeat_s: float = Field(default=1.0, gt=0, le=60, description=(
        "Seconds between heartbeats, lease renewals and placement checks."))
    membership_timeout_s: float = Field(default=10.0, gt=0, le=600, description=(
        "A worker silent this long leaves the group; also each camera lease's length."))

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str | None) -> str | None:
        return None if v is None else check_redis_url(v)

    @model_validator(mode="after")
    def _timeout_spans_heartbeats(self) -> ClusterConfig:
        if self.membership_timeout_s < 2 * self.heartbeat_s:
            raise ValueError("membership_timeout_s must be at least twice heartbeat_s "
                             "(one late heartbeat must not end a membership)")
        return self


class MetricsConfig(_Section):
    host: str = Field(default="127.0.0.1", description=(
        "Address the metrics and health endpoint listens on."))
    port: int = Field(default=9108, ge=0, le=65535, description=(
        "Port of the metrics and health endpoint (0: off)."))


class OutputConfig(_Section):
    dir: Path | None = Field(default=None, description=(
        "Directory sink: one JPEG + JSON per emitted crop."))
    dump_scored: Path | None = Field(default=None, description=(
        "Every scored crop with its scores, emitted or not (tuning)."))


class _Override(_Strict):
    """A stream's overrides of a section: only the keys it sets."""


class ScoreOverride(_Override):
    min_det_score: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    min_eye_px: Annotated[float, Field(ge=0)] | None = None
    max_yaw_deg: Annotated[float, Field(gt=0, le=90)] | None = None
    max_per_track_hz: Annotated[float, Field(ge=0)] | None = None


class SelectOverride(_Override):
    policy: Literal["track_end", "improving"] | None = None
    top_k: Annotated[int, Field(ge=1, le=100)] | None = None
    min_quality: Annotated[float, Field(ge=0, le=100)] | None = None
    improve_delta: Annotated[float, Field(ge=0, le=100)] | None = None
    max_wait_s: Annotated[float, Field(ge=0)] | None = None
    size_weight: Annotated[float, Field(ge=0, le=100)] | None = None
    consensus_weight: Annotated[float, Field(ge=0, le=100)] | None = None


class StreamConfig(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description=(
        "The stream's name in entries, logs and metrics."))
    url: str = Field(description="rtsp://…, a video file, or loop://file (a file played as live).")
    fps: float = Field(default=5.0, gt=0, le=240, description="Frames analysed per second.")
    score: ScoreOverride | None = Field(default=None, description="[score] gates for this stream.")
    select: SelectOverride | None = Field(default=None, description=(
        "[select] policy and thresholds for this stream."))

    @field_validator("url")
    @classmethod
    def _url_form(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class Settings(BaseSettings):
    """The whole configuration of one stream-gate process."""

    model_config = SettingsConfigDict(
        env_prefix="STREAM_GATE__",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
    )

    decode: DecodeConfig = DecodeConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    detect: DetectConfig = DetectConfig()
    track: TrackConfig = TrackConfig()
    score: ScoreConfig = ScoreConfig()
    select: SelectConfig = SelectConfig()
    redis: RedisConfig = RedisConfig()
    cluster: ClusterConfig = ClusterConfig()
    output: OutputConfig = OutputConfig()
    metrics: MetricsConfig = MetricsConfig()
    streams: list[StreamConfig] = []

    @field_validator("streams")
    @classmethod
    def _unique_ids(cls, v: list[StreamConfig]) -> list[StreamConfig]:
        seen: set[str] = set()
        for s in v:
            if s.id in seen:
                raise ValueError(f"duplicate stream id {s.id!r}")
            seen.add(s.id)
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (passed in as init kwargs); no .env or secrets dirs.
        return (env_settings, init_settings)

    def score_for(self, stream_id: str) -> ScoreConfig:
        """The score settings of one stream: global values with its overrides applied."""
        return _overridden(self.score, self.stream(stream_id).score)

    def select_for(self, stream_id: str) -> SelectConfig:
        """The select settings of one stream: global values with its overrides applied."""
        return _overridden(self.select, self.stream(stream_id).select)

    def stream(self, stream_id: str) -> StreamConfig:
        for s in self.streams:
            if s.id == stream_id:
                return s
        raise KeyError(stream_id)


_S = TypeVar("_S", bound=BaseModel)


def _overridden(base: _S, override: BaseModel | None) -> _S:
    """``base`` with the keys set in ``override`` replaced, validated again."""
    if override is None:
        return base
    return type(base).model_validate(
        {**base.model_dump(), **override.model_dump(exclude_none=True)}
    )


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: key.path: reason``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        if e["type"] == "extra_forbidden":
            reason = "unknown key"
        elif e["type"] == "missing":
            reason = "required key is missing"
        else:
            reason = e["msg"]
            secret = any("password" in str(p) for p in e["loc"])
            if "input" in e and not isinstance(e["input"], dict | list) and not secret:
                reason += f" (got {redact_url(repr(e['input']))})"
        env = ENV_PREFIX + "__".join(str(p) for p in e["loc"]).upper()
        where = env if env in os.environ else source
        lines.append(f"{where}: {loc}: {reason}")
    return "\n".join(lines)


def load_settings(
    path: Path | None = None, defaults: dict[str, Any] | None = None,
    content: bytes | None = None,
) -> Settings:
    """Read ``path`` (TOML; ``content``: its bytes, already read) over ``defaults``,
    apply the environment, validate.

    Raises :class:`ConfigError` naming the file and key for any problem.
    """
    data: dict[str, Any] = dict(defaults or {})
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            raw = path.read_bytes() if content is None else content
            data = _deep_merge(data, tomllib.loads(raw.decode("utf-8")))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: "
                              f"{raw[exc.start:exc.start + 1]!r}); save it as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    check_environment()
    # Sections are matched without regard to case by pydantic-settings (for the
    # environment's sake); in a file, [Select] beside [select] is a typo, not a merge.
    for key in data:
        if key not in Settings.model_fields:
            raise ConfigError(f"{source}: {key}: unknown key (sections: "
                              f"{', '.join(Settings.model_fields)})")
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    except SettingsError as exc:  # a STREAM_GATE__ variable that is not valid JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "a STREAM_GATE__ variable"
        raise ConfigError(f"{name}: not a valid value (a section or list takes JSON): "
                          f"{redact_url(str(os.environ.get(name, '')))!r}") from None


ENV_PREFIX = "STREAM_GATE__"


def check_environment() -> None:
    """Every ``STREAM_GATE__SECTION[__KEY]`` variable names a real setting: a typo is an
    error naming the variable, not a setting silently left at its default."""
    for name in sorted(os.environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        field = Settings.model_fields.get(parts[0])
        known = field is not None
        section = field.annotation if field is not None else None
        if known and len(parts) > 1 and isinstance(section, type) \
                and issubclass(section, BaseModel):
            known = parts[1] in section.model_fields and len(parts) == 2
        if not known:
            raise ConfigError(f"{name}: unknown setting (sections: "
                              f"{', '.join(Settings.model_fields)}; see configs/default.toml)")


def check_runnable(settings: Settings) -> None:
    """What ``run`` needs beyond a valid file (start-up and every hot reload alike)."""
    if not settings.streams:
        raise ConfigError("streams: no [[streams]] configured")
    if settings.cluster.enabled:
        check_cluster_url(settings)


def check_cluster_url(settings: Settings) -> None:
    """The coordination Redis (``cluster.url``, else ``redis.url``) is one every worker
    can reach: not ``embedded``."""
    if (settings.cluster.url or settings.redis.url) == "embedded":
        key = "cluster.url" if settings.cluster.url else "redis.url"
        raise ConfigError(f"{key}: cluster mode needs a Redis every worker reaches; "
                          "'embedded' is private to one process")
