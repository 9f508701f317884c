#!/usr/bin/env bash
# Sets up a fresh Debian machine for mheval: system packages, a virtual environment in .venv, the project.
# Idempotent: a second call only checks. Needs root (or sudo) for apt-get the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

# pocketsphinx-testdata: real LibriVox readings the voice metrics' tests use
APT_PACKAGES=(espeak-ng opencv-data chromium chromium-driver pocketsphinx-testdata)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.mheval-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing mheval and its dependencies into .venv (first time: a few minutes, ~6 GB)"
  .venv/bin/python -m pip install -q --upgrade pip
  # piper: the puppet's natural English voice (piper-tts is GPL-3.0; mheval runs it as a separate program and never
  # imports it), so the main job's English anchor and the committed CI baseline are spoken by the same voice
  .venv/bin/python -m pip install -q -e '.[dev,piper]'
  touch "$stamp"
fi
