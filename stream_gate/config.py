"""Configuration: pydantic models read from a TOML file plus ``STREAM_GATE__…`` overrides.

Precedence, highest first: environment variables (``STREAM_GATE__REDIS__URL=…``), the
TOML file given with ``--config``, the built-in defaults of the command (``demo`` has its
own). Unknown keys and bad values stop start-up with the key path and the reason, so a
typo in a camera file never silently falls back to a default.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from stream_gate.errors import ConfigError


class _Section(BaseModel):
    """Base for config sections: unknown keys are errors, values are validated on set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DecodeConfig(_Section):
    queue_size: Annotated[int, Field(ge=1, le=1024)] = 8
    open_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    read_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 30.0
    threads: Annotated[int, Field(ge=0, le=64)] = 0
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    hwaccel: Literal["none", "cuda"] = "none"
    loop_speed: Annotated[float, Field(ge=0, le=100)] = 1.0
    skip_nonref: bool = True
    stall_s: Annotated[float, Field(gt=0)] = 10.0
    shutdown_grace_s: Annotated[float, Field(gt=0)] = 15.0
    drop_oldest: bool | None = None
    max_pixels: Annotated[int, Field(ge=64 * 64)] = 3840 * 2160


class DetectConfig(_Section):
    model: Literal["centerface", "yunet"] = "centerface"
    model_path: Path | None = None
    precision: Literal["int8", "fp32"] = "int8"
    max_side: Literal[0] | Annotated[int, Field(ge=64, le=4096)] = 0
    score_threshold: Annotated[float, Field(ge=0.01, le=1.0)] = 0.3
    nms_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3
    min_face_px: Annotated[float, Field(ge=0)] = 16.0
    batch_size: Annotated[int, Field(ge=1, le=256)] = 4
    max_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 20.0
    threads: Annotated[int, Field(ge=0, le=256)] = 0
    refine_px: Annotated[int, Field(ge=0, le=512, multiple_of=32)] = 96
    refine_small_px: Annotated[int, Field(ge=32, le=512, multiple_of=32)] = 192
    every: Annotated[int, Field(ge=1, le=25)] = 3
    every_still: Annotated[int, Field(ge=1, le=250)] = 15
    max_motion: Annotated[float, Field(gt=0)] = 0.5

    @model_validator(mode="after")
    def _yunet_needs_a_file(self) -> DetectConfig:
        if self.model == "yunet" and self.model_path is None:
            raise ValueError('model = "yunet" needs model_path: the YuNet ONNX file '
                             "(stream-gate ships no YuNet weights)")
        return self

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
    engine: Literal["onnxruntime", "tensorrt", "torch"] = "onnxruntime"
    ort_spin: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    half: bool = True
    cuda_graphs: bool = True
    trt_int8: bool = False
    engine_cache: Path = Path("~/.cache/stream-gate/engines")


class TrackConfig(_Section):
    high_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    new_track_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    match_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    low_match_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    buffer: Annotated[float, Field(ge=0, le=2)] = 0.6
    min_hits: Annotated[int, Field(ge=1, le=1000)] = 3
    max_age_s: Annotated[float, Field(gt=0)] = 1.0


class ScoreConfig(_Section):
    model: str = "cr-fiqa-s"
    threads: Annotated[int, Field(ge=0, le=256)] = 0
    min_det_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    min_eye_px: Annotated[float, Field(ge=0)] = 4.0
    max_yaw_deg: Annotated[float, Field(gt=0, le=90)] = 90.0
    max_per_track_hz: Annotated[float, Field(ge=0)] = 0.0

    @field_validator("model")
    @classmethod
    def _model_name(cls, v: str) -> str:
        if v not in ("heuristic", "cr-fiqa-s") and not v.endswith(".json"):
            raise ValueError("must be 'cr-fiqa-s', 'heuristic' or a path to a model manifest .json")
        return v


class SelectConfig(_Section):
    policy: Literal["track_end", "improving"] = "track_end"
    top_k: Annotated[int, Field(ge=1, le=100)] = 1
    min_quality: Annotated[float, Field(ge=0, le=100)] = 0.0
    improve_delta: Annotated[float, Field(ge=0, le=100)] = 5.0
    max_wait_s: Annotated[float, Field(ge=0)] = 0.0


class RedisConfig(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    key: str = "stream_gate:crops"
    maxlen: Annotated[int, Field(ge=1)] = 100_000
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 95
    connect_timeout_s: Annotated[float, Field(gt=0)] = 3.0
    spool_dir: Path | None = None
    spool_max_entries: Annotated[int, Field(ge=1)] = 100_000

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        if v != "embedded" and not re.match(r"^(redis|rediss|unix)://", v):
            raise ValueError("must be 'embedded' or start with redis://, rediss:// or unix://")
        return v


class MetricsConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9108


class OutputConfig(_Section):
    dir: Path | None = None
    dump_scored: Path | None = None


class _Override(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class StreamConfig(_Section):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
    url: str
    fps: Annotated[float, Field(gt=0, le=240)] = 5.0
    score: ScoreOverride | None = None
    select: SelectOverride | None = None

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
    )

    decode: DecodeConfig = DecodeConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    detect: DetectConfig = DetectConfig()
    track: TrackConfig = TrackConfig()
    score: ScoreConfig = ScoreConfig()
    select: SelectConfig = SelectConfig()
    redis: RedisConfig = RedisConfig()
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
            if "input" in e and not isinstance(e["input"], dict | list):
                reason += f" (got {e['input']!r})"
        lines.append(f"{source}: {loc}: {reason}")
    return "\n".join(lines)


def load_settings(
    path: Path | None = None, defaults: dict[str, Any] | None = None
) -> Settings:
    """Read ``path`` (TOML) over ``defaults``, apply the environment, validate.

    Raises :class:`ConfigError` naming the file and key for any problem.
    """
    data: dict[str, Any] = dict(defaults or {})
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                data = _deep_merge(data, tomllib.load(fh))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
