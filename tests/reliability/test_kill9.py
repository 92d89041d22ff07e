"""The kill -9 loop at small scale (soak/kill9.py): SIGKILL the server mid-burst, lose nothing.

Both store modes: one commit per command, and the write queue (group commit), whose
promise is the same: a command is answered only once its write is durable.
"""

from __future__ import annotations

import pytest

from soak import kill9


@pytest.mark.timeout(120)
def test_sigkill_mid_burst_never_loses_an_acknowledged_write_nor_corrupts_the_file() -> None:
    result = kill9.run(quick=True)
    modes = result["numbers"]["modes"]
    assert [m["mode"] for m in modes] == ["one commit per command", "write queue (group commit)"]
    for m in modes:
        # the bursts really wrote (and really were cut short: some requests never got an answer)
        assert m["acknowledged"] > 0, m
        assert m["sent"] > m["acknowledged"], m
        # what a user was told was saved is there after every kill, in a sound file
        assert m["lost"] == 0, m["lost_examples"]
        assert m["present"] == m["acknowledged"], m
        assert m["integrity_ok"] == m["kills"], m["integrity_bad"]
        assert m["errors_5xx"] == 0, m
    assert result["met"], result["figure"]
