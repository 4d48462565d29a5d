# Sourced by scripts/test.sh: make sure headless Chromium and its driver are there for the browser tests
# (tests/serve/test_browser.py). Installs Debian's chromium and chromium-driver with apt where this user
# may (root, or password-less sudo); elsewhere the browser tests skip and say what to install.
if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
    :
elif command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
    fi
    if [ "$SUDO" = "none" ]; then
        echo "==> no Chromium, and apt-get needs root here: the browser tests will skip (apt-get install chromium chromium-driver)"
    else
        echo "==> installing Chromium and its driver for the browser tests (apt-get)"
        if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >/tmp/svllreid-apt.log 2>&1; then
            echo "==> apt-get could not install Chromium (see /tmp/svllreid-apt.log): the browser tests will skip"
        fi
    fi
else
    echo "==> no Chromium and no apt-get: the browser tests will skip (install Chromium and chromedriver)"
fi
