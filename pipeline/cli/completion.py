"""``soclake completion --install``: the completion script put where the shell finds it.

bash and zsh get the script in ``$XDG_DATA_HOME/soclake/`` (default ``~/.local/share``) and one
line in their rc file that sources it (added once; rerunning only refreshes the script). fish
loads ``$XDG_CONFIG_HOME/fish/completions/soclake.fish`` by itself. The script asks ``soclake``
for the answers at completion time, so it stays right across upgrades.
"""

from __future__ import annotations

import os
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
MARKER = "# soclake completion"


def shell_from_env(env=os.environ) -> str | None:
    """``bash``, ``zsh`` or ``fish`` from ``$SHELL``, else None."""
    name = Path(env.get("SHELL", "")).name
    return name if name in SHELLS else None


def _home(env) -> Path:
    return Path(env.get("HOME") or Path.home())


def paths(shell: str, env=os.environ) -> tuple[Path, Path | None]:
    """(where the script goes, the rc file that sources it or None when the shell needs none)."""
    home = _home(env)
    if shell == "fish":
        config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        return config / "fish" / "completions" / "soclake.fish", None
    data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    rc = Path(env.get("ZDOTDIR") or home) / ".zshrc" if shell == "zsh" else home / ".bashrc"
    return data / "soclake" / f"completion.{shell}", rc


def install(shell: str, script: str, env=os.environ) -> list[str]:
    """Write ``script`` and, for bash and zsh, add the sourcing line once; returns what was done."""
    target, rc = paths(shell, env)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(script if script.endswith("\n") else script + "\n")
    done = [f"wrote {target}"]
    if rc is not None:
        line = f'[ -f "{target}" ] && . "{target}"  {MARKER}\n'
        text = rc.read_text() if rc.exists() else ""
        if MARKER in text:
            done.append(f"{rc} already loads it")
        else:
            with rc.open("a") as f:
                f.write(("" if not text or text.endswith("\n") else "\n") + line)
            done.append(f"added a line to {rc} that loads it")
    done.append("open a new shell to use it")
    return done
