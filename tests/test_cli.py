import subprocess
import sys

from longlora_kit import cli


def test_env_command_prints_report(capsys):
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "transformers" in out and "profile" in out


def test_console_script_help_lists_commands():
    result = subprocess.run([sys.executable, "-m", "longlora_kit.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "env" in result.stdout
