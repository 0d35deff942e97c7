# Entry points. `make run` and `make test` work on a fresh Debian 12 machine as root.
SHARED ?= $(abspath ../shared)
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?= $(SHARED)/models/wiki-7m
PROMPT ?= The history of the city

.PHONY: all deps build run test bench clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRUGAL_SHARED_DIR=$(SHARED)

# SHARED is cached by cmake at the first configure; a different one configures again.
build: $(BUILD)/build.ninja
	@grep -qx 'FRUGAL_SHARED_DIR:PATH=$(SHARED)' $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DFRUGAL_SHARED_DIR=$(SHARED)
	cmake --build $(BUILD) -j $(JOBS)

# The main job: stream a greedy continuation of a prompt from the default model.
run: deps
	@$(MAKE) --no-print-directory build
	$(BUILD)/frugal generate -m $(MODEL) -p "$(PROMPT)" -n 64 --temp 0

test: deps
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 1500

bench: deps
	@$(MAKE) --no-print-directory build
	FRUGAL_SHARED=$(SHARED) bench/run_bench.sh $(BUILD)

clean:
	rm -rf $(BUILD)
