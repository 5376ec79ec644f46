#!/usr/bin/env bash
# Writes the console's screenshots, docs/console-*.png (1280x900), from the console test's own
# broker and data with traffic running: the test drives Chromium through tests/console/shot.mjs
# (Node's built-in WebSocket, no npm packages). Needs chromium (bash tests/kafka/install.sh
# chromium) and node.
set -euo pipefail
cd "$(dirname "$0")/../.."
SLUICE_CONSOLE_SCREENSHOTS="$PWD/docs" \
  cargo test -p sluice-cli --test console console_shows_the_brokers_figures_in_chromium -- --nocapture
ls -l docs/console-*.png
