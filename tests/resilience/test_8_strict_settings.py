"""Issue 13 #8: settings that make no sense are refused with one line naming the setting.

Before: ``PARTIAL_ON_PAUSE=ture`` became false, ``BLOB_TTL_S=-5`` and ``STAGE_CONCURRENCY=0`` were taken,
``--metrics-port 99999`` ended in an ``OverflowError`` traceback.
"""

from __future__ import annotations

import pytest

from emostream.config import ConfigError, load_settings

from .conftest import emostream


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMOSTREAM_VAD_PARTIAL_ON_PAUSE": "ture"}, "EMOSTREAM_VAD_PARTIAL_ON_PAUSE='ture': use true/false"),
        ({"EMOSTREAM_BUS_BLOB_TTL_S": "-5"}, "bus.blob_ttl_s (EMOSTREAM_BUS_BLOB_TTL_S='-5'): expected float > 0"),
        ({"EMOSTREAM_STAGE_CONCURRENCY": "0"}, "stage.concurrency (EMOSTREAM_STAGE_CONCURRENCY='0'): expected int >= 1"),
        ({"EMOSTREAM_STAGE_METRICS_PORT": "99999"}, "stage.metrics_port (EMOSTREAM_STAGE_METRICS_PORT='99999'): expected int <= 65535"),
        ({"EMOSTREAM_API_PORT": "0"}, "api.port (EMOSTREAM_API_PORT='0'): expected int >= 1"),
        ({"EMOSTREAM_BUS_MAXLEN": "-1"}, "bus.maxlen"),
    ],
)  # fmt: skip
def test_bad_values_are_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("word", ["1", "true", "YES", "0", "false", "no"])
def test_booleans_accept_only_plain_words(word: str) -> None:
    on = load_settings(env={"EMOSTREAM_VAD_PARTIAL_ON_PAUSE": word}).vad.partial_on_pause
    assert on is (word.lower() in {"1", "true", "yes"})


def test_metrics_port_out_of_range_is_one_line_not_a_traceback() -> None:
    proc = emostream("worker", "toy", "--redis", "redis://127.0.0.1:1/0", "--metrics-port", "99999")
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 2, text
    assert "metrics port 99999" in text and "1-65535" in text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1
