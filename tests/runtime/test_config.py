"""Settings: defaults < TOML file < EMOSTREAM_* environment; mistakes are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from emostream.config import ConfigError, Settings, load_settings, redact_url, settings_toml


def test_defaults_without_file_or_env() -> None:
    s = load_settings(env={})
    assert s == Settings()
    assert s.bus.url == "memory://" and s.stage.concurrency == 2


def test_env_overrides_toml_overrides_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "emostream.toml"
    cfg.write_text('[bus]\nurl = "redis://from-file:6379"\nmaxlen = 500\n[asr]\nword_timestamps = false\n')
    s = load_settings(cfg, env={"EMOSTREAM_BUS_MAXLEN": "42", "EMOSTREAM_STAGE_SHUTDOWN_GRACE_S": "2.5"})
    assert s.bus.url == "redis://from-file:6379"  # file beats default
    assert s.bus.maxlen == 42  # env beats file, converted to int
    assert s.stage.shutdown_grace_s == 2.5
    assert s.asr.word_timestamps is False
    via_env = load_settings(env={"EMOSTREAM_CONFIG": str(cfg), "EMOSTREAM_ASR_WORD_TIMESTAMPS": "yes"})
    assert via_env.bus.maxlen == 500 and via_env.asr.word_timestamps is True
    assert load_settings(env={"EMOSTREAM_HOME": "/data/es"}).home == Path("/data/es")


@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        ({"EMOSTREAM_BUZ_URL": "x"}, None, "unknown setting EMOSTREAM_BUZ_URL: sections are bus, stage"),
        ({"EMOSTREAM_BUS_URLL": "x"}, None, "unknown setting EMOSTREAM_BUS_URLL: bus has url, maxlen"),
        (
            {"EMOSTREAM_BUS_MAXLEN": "many"},
            None,
            "invalid setting bus.maxlen (EMOSTREAM_BUS_MAXLEN='many'): expected int, got str",
        ),
        ({}, "[bus]\nmaxlen = [", "is not valid TOML"),
        ({}, "[bus]\nnope = 1\n", "invalid setting: Object contains unknown field `nope` - at `$.bus`"),
    ],
)
def test_mistakes_are_one_clear_line(
    tmp_path: Path, env: dict[str, str], toml: str | None, message: str
) -> None:
    path = None
    if toml is not None:
        path = tmp_path / "bad.toml"
        path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env=env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nowhere.toml not found"):
        load_settings(tmp_path / "nowhere.toml", env={})


def test_show_redacts_secrets() -> None:
    s = load_settings(
        env={"EMOSTREAM_BUS_URL": "rediss://:hunter2@cache:6380/1", "EMOSTREAM_API_SECRET": "s3"}
    )
    text = settings_toml(s)
    assert "hunter2" not in text and 'url = "rediss://:***@cache:6380/1"' in text
    assert 'secret = "***"' in text
    assert redact_url("redis://cache:6379") == "redis://cache:6379"
