#!/usr/bin/env bash
# Set up (or refresh) .venv, then run the built-in demo. Extra arguments go to 'svllreid demo'.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec svllreid demo "$@"
