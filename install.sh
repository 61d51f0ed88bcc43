#!/usr/bin/env bash
# Installs DistilXLSR and everything its tests need, on a Debian/Ubuntu machine or image, into the active Python:
#   bash install.sh
# 1. system packages, with apt, only those missing: ffmpeg (the transformers ASR pipeline decodes audio *file paths*
#    with it), cmake, g++ and the Boost headers (to build KenLM's lmplz, the n-gram estimator), chromium and
#    chromium-driver (the web page's browser test);
# 2. torch 2.13.0 first (the CPU build; install your accelerator's build before this script to keep it), then the
#    project itself, editable, with every extra and the tools the integration tests run (`pip install -e
#    .[all,integrations]`: the dependencies are declared once, in pyproject.toml); the LM decoding packages without
#    their dependencies (see requirements-lm.txt);
# 3. KenLM's lmplz and build_binary, built from KenLM's sources beside this Python (skipped when present).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
# Debian's Chromium and its driver: the server's web page is tested in a real headless browser (selenium)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
for lib in program-options system thread test; do
  dpkg -s "libboost-$lib-dev" >/dev/null 2>&1 || missing+=("libboost-$lib-dev")
done
if ((${#missing[@]})); then
  sudo=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
  echo "apt: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[all,integrations]"
python -m pip install --quiet --no-deps -r requirements-lm.txt
python -m modeling_distilxlsr.lm.kenlm_tools
