# Two commands do everything: `make demo` and `make test`. Each sets itself up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages the simulator and the tests use: real FAT32/exFAT tools, FUSE, ffmpeg for real MP4s,
# Chromium for the browser tests, CJK fonts so the kiosk's Chinese renders in screenshots, a one-node Ceph
# cluster with radosgw (scripts/ceph-rgw.sh) as the real S3 server with Object Lock, curl for its readiness check,
# iproute2 (with util-linux unshare): the zeroconf test builds its own network namespace; shellcheck for the
# image's scripts; Pango for the PDF reports (WeasyPrint) and poppler-utils (pdftoppm) to check a PDF renders;
# Go with golang.org/x/mod (golang-golang-x-mod-dev): tests/test_note_interop.py builds its sumdb/note, the
# reference signed-note implementation, offline, to check the station's checkpoints with code we did not write.
DEB_PACKAGES := dosfstools exfatprogs exfat-fuse fuse3 mtools util-linux fdisk ffmpeg chromium fonts-noto-cjk \
	ceph-mon ceph-osd radosgw curl iproute2 shellcheck libpango-1.0-0 libpangoft2-1.0-0 poppler-utils \
	golang-go golang-golang-x-mod-dev

.PHONY: demo test lint deps venv clean image image-deps image-test bundle

# Checked on every run (dpkg-query is quick): a stamp file would lie after a package is removed.
define install_debs
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_debs,$(DEB_PACKAGES))

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

demo: deps venv
	$(BIN)/recterm demo --dir var/demo

test: deps venv
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache build

# The station's OS image (image/README.md): needs root; slow (software-emulated arm64).
IMAGE_DIR := build/image
IMAGE_DEB_PACKAGES := mmdebstrap qemu-user-static arch-test mtools dosfstools e2fsprogs fdisk qemu-system-arm \
	ipxe-qemu python3
DEV_UPDATE_KEY := var/keys/dev-update
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)

image-deps:
	$(call install_debs,$(IMAGE_DEB_PACKAGES))

$(DEV_UPDATE_KEY).pem: | venv
	$(BIN)/recterm-update keygen $(DEV_UPDATE_KEY)

image: image-deps venv $(DEV_UPDATE_KEY).pem
	UPDATE_KEY_PUB=$(DEV_UPDATE_KEY).pub.pem VERSION=$(VERSION) PIP=$(BIN)/pip image/build.sh $(IMAGE_DIR)

image-test: image-deps venv
	$(BIN)/python image/image_test.py $(IMAGE_DIR)

# A signed update bundle of the built image, with the development key (release: UPDATE_KEY=... offline).
bundle: venv $(DEV_UPDATE_KEY).pem
	@test -f $(IMAGE_DIR)/root.img || { echo "no $(IMAGE_DIR)/root.img: run make image first"; exit 1; }
	$(BIN)/recterm-update bundle --key $(or $(UPDATE_KEY),$(DEV_UPDATE_KEY).pem) --rootfs $(IMAGE_DIR)/root.img \
	  --boot $(IMAGE_DIR)/boot-slot.tar --version $(VERSION) --out $(IMAGE_DIR)/recterm-$(VERSION).rtb
