"""The shipped completion scripts must equal what the current CLI generates."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ccli.cli.completion_scripts import SHELLS, command_tree, render

ROOT = Path(__file__).resolve().parent.parent
FILES = {"bash": "ccli.bash", "zsh": "_ccli", "fish": "ccli.fish"}


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_scripts_are_current(shell):
    shipped = (ROOT / "completions" / FILES[shell]).read_text()
    assert shipped == render(shell), (
        f"completions/{FILES[shell]} is stale: run `ccli completions {shell} > completions/{FILES[shell]}`"
    )


def test_every_command_and_option_is_in_every_script():
    scripts = {shell: render(shell) for shell in SHELLS}
    for spec in command_tree():
        for name in spec.subcommands:
            for shell, text in scripts.items():
                assert name in text, (shell, name)
        for option in spec.options:
            long_names = [n for n in option.names if n.startswith("--")]
            for name in long_names:
                assert name in scripts["bash"] and name in scripts["zsh"], name
                assert f"-l {name[2:]}" in scripts["fish"] or len(spec.path) == 1, name


def test_bash_script_completes_subcommands_and_options(tmp_path):
    if not shutil.which("bash"):
        pytest.skip("bash not installed")
    script = ROOT / "completions" / FILES["bash"]
    probe = (
        f"source {script}\n"
        "COMP_WORDS=(ccli ca); COMP_CWORD=1; _ccli; echo \"${COMPREPLY[*]}\"\n"
        "COMP_WORDS=(ccli cache v); COMP_CWORD=2; _ccli; echo \"${COMPREPLY[*]}\"\n"
        "COMP_WORDS=(ccli eval --pa); COMP_CWORD=2; _ccli; echo \"${COMPREPLY[*]}\"\n"
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["cache", "verify", "--pairwise"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse_their_scripts(shell):
    if not shutil.which(shell):
        pytest.skip(f"{shell} not installed")
    flag = ["-n"] if shell == "zsh" else ["--no-execute"]
    subprocess.run([shell, *flag, str(ROOT / "completions" / FILES[shell])], check=True)


def test_backbone_list_does_not_depend_on_what_was_imported_before():
    # The scripts are rendered in whichever process runs `ccli completions`; a backbone module that
    # registers only once something else imported it made the list differ between processes.
    code = "from ccli.models import available_backbones; print(' '.join(available_backbones()))"
    names = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=ROOT).stdout.split()
    assert {"cae28", "cae32", "cae96", "resnet50-feature-ae", "cbam_small_cnn", "small_cnn"} <= set(names)
