# SPDX-License-Identifier: GPL-2.0
#
# rnf: a stateful firewall and NAT engine for Linux, in Rust.
#
#   make demo     build everything and run rnf in a VM on a real scenario
#   make check    run every test; ends with "N passed, N failed"
#   make bench    rnf vs no firewall, nftables and iptables in the VM (BENCH_QUICK=1: fewer sizes)
#
#   make deps     install build and test dependencies (Debian 12, as root)
#   make kernel   build (or reuse from the cache) the test kernel
#   make module   build rnf.ko against KDIR (default: the test kernel)
#   make rnfctl   build the CLI
#   make vm       boot the test VM with a shell (interactive)
#   make clean
#
# KDIR=/path/to/kernel/build builds rnf.ko against any kernel with
# CONFIG_RUST. RNF_CACHE sets the kernel cache (default ~/.cache/rnf).

SHELL := /bin/bash
T := tools/testing

# The test kernel, built once and cached; resolved (and built if missing)
# only when a target needs it, and then only once.
ifeq ($(origin KDIR),undefined)
KDIR = $(eval KDIR := $(shell $(T)/kernel.sh))$(KDIR)
endif

MODULE_FLAGS := LLVM=1 $(if $(CLIPPY),CLIPPY=$(CLIPPY))

.PHONY: all deps kernel module rnfctl demo check bench vm clean
all: module rnfctl

deps:
	@$(T)/deps.sh

kernel: deps
	@$(T)/kernel.sh

module:
	$(MAKE) -C $(KDIR) M=$(CURDIR) $(MODULE_FLAGS) modules

rnfctl:
	cargo build --locked -p rnfctl

demo: deps
	@$(MAKE) --no-print-directory module rnfctl
	@$(T)/vm.sh $(T)/demo.sh

check: deps
	@$(T)/check.sh

# Not part of check: about 25 minutes under TCG, plus a kernel build the
# first time: benchmarks run on the benchmark kernel (the test kernel's config
# without its fault-finding options; BENCH_KERNEL=test uses the test kernel),
# with an rnf.ko built for it under build/bench-module. rnfctl is built with
# --release here so that rule-update times measure rnf, not a debug build.
bench: deps
	@if [ "$${BENCH_KERNEL:-bench}" = test ]; then $(MAKE) --no-print-directory module; fi
	cargo build --release --locked -p rnfctl
	@$(if $(filter command line environment,$(origin KDIR)),KDIR=$(KDIR)) tools/bench/bench.sh

vm: deps
	@$(T)/vm.sh

clean:
	rm -f rnf.ko rnf.mod rnf.mod.c modules.order Module.symvers
	rm -f rust/*.o rust/*.d rust/ffi_generated.rs
	find . -name '.*.cmd' -not -path './target/*' -delete
	cargo clean
