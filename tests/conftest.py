"""Shared test helpers: run the CLI in-process and capture its streams and exit code."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """`cli("eval", "p.npy", ...)` -> CliResult; the cache lives in a per-test folder."""
    monkeypatch.setenv("CCLI_CACHE", str(tmp_path / "cache"))

    def invoke(*args: str) -> CliResult:
        from ccli.cli.main import run

        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            run([str(a) for a in args])
        captured = capsys.readouterr()
        code = exc.value.code if isinstance(exc.value.code, int) else (0 if exc.value.code is None else 1)
        return CliResult(code, captured.out, captured.err)

    return invoke


def assert_bad_input(result: CliResult, *needles: str) -> None:
    """Exit 2, exactly one error sentence on stderr naming what is wrong, no traceback."""
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = [ln for ln in result.err.strip().splitlines() if ln.strip()]
    error_lines = [ln for ln in lines if ln.startswith("ccli: error:") or ln.startswith("Error:")]
    assert len(error_lines) == 1, result.err
    for needle in needles:
        assert needle in result.err, (needle, result.err)
    assert result.out == ""
