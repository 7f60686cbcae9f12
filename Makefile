# libmm — `make` builds the libraries, examples and tests; `make test` runs the tests.
# Outputs sit beside their sources: lib/libmm.so*, lib/libmm.a, examples/mm-*, tests/test_*.
# `make SANITIZE=1 test` builds with AddressSanitizer + UndefinedBehaviorSanitizer
# (run `make clean` when switching).

# The version is written in one place, include/mm.h (MM_VERSION_*, MM_ABI_VERSION); read it here.
mm_define    = $(shell sed -n 's/^\#define MM_$(1) \([0-9][0-9]*\)$$/\1/p' include/mm.h)
ABI_VERSION := $(call mm_define,ABI_VERSION)
VERSION     := $(call mm_define,VERSION_MAJOR).$(call mm_define,VERSION_MINOR).$(call mm_define,VERSION_PATCH)
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

CC      ?= cc
CXX     ?= c++
CFLAGS  ?= -O2 -g
CXXFLAGS ?= -O2 -g
WARN    := -Wall -Wextra -Wpedantic -Werror

# OpenBLAS through pkg-config, falling back to the plain library name.
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
DEP_CFLAGS  := $(BLAS_CFLAGS) $(shell pkg-config --cflags libpng libjpeg 2>/dev/null)
DEP_LIBS    := $(BLAS_LIBS) $(shell pkg-config --libs libpng libjpeg 2>/dev/null || echo -lpng -ljpeg) -lm -lpthread
# libsoxr (optional, WITH_SOXR=0 leaves it out): audio at other rates is resampled to the
# encoder's; without it such clips are refused (lib/ext/resample.c).
WITH_SOXR ?= $(shell pkg-config --exists soxr 2>/dev/null && echo 1 || echo 0)
ifeq ($(WITH_SOXR),1)
DEP_CFLAGS  += -DMMI_HAVE_SOXR $(shell pkg-config --cflags soxr)
DEP_LIBS    += $(shell pkg-config --libs soxr)
endif
# FFmpeg (optional, WITH_FFMPEG=0 leaves it out): video files are read through libavformat,
# libavcodec and libswscale; without it mm_video_load_file is refused (lib/ext/video_ffmpeg.c).
FFMPEG_PKGS := libavformat libavcodec libswscale libavutil
WITH_FFMPEG ?= $(shell pkg-config --exists $(FFMPEG_PKGS) 2>/dev/null && echo 1 || echo 0)
ifeq ($(WITH_FFMPEG),1)
DEP_CFLAGS  += -DMMI_HAVE_FFMPEG $(shell pkg-config --cflags $(FFMPEG_PKGS))
# FFmpeg's libraries by name, not its pkg-config modules: a static libmm then links them as
# shared libraries without every codec library their own private dependencies list.
FFMPEG_LIBS := $(shell pkg-config --libs $(FFMPEG_PKGS))
DEP_LIBS    += $(FFMPEG_LIBS)
endif
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS  := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

# lib/ is grouped by layer (lib/README.md): the pipeline in lib/, its parts in lib/*/.
LIB_DIRS  := lib $(patsubst %/,%,$(sort $(wildcard lib/*/)))
LIB_INC   := $(addprefix -I,$(LIB_DIRS))
LIB_CFLAGS := -std=c11 $(WARN) -fPIC -fvisibility=hidden -D_GNU_SOURCE -DMM_BUILDING -Iinclude $(LIB_INC) $(DEP_CFLAGS) $(SAN_FLAGS) $(CFLAGS)
APP_CFLAGS := -std=c11 $(WARN) -D_GNU_SOURCE -Iinclude $(SAN_FLAGS) $(CFLAGS)
APP_CXXFLAGS := -std=c++17 $(WARN) -Iinclude -Ibindings/cpp $(SAN_FLAGS) $(CXXFLAGS)
TEST_CFLAGS := -std=c11 $(WARN) -D_GNU_SOURCE -Iinclude $(LIB_INC) $(DEP_CFLAGS) $(CHECK_CFLAGS) $(SAN_FLAGS) $(CFLAGS)

LIB_SRC   := $(sort $(wildcard $(addsuffix /*.c,$(LIB_DIRS))))
LIB_OBJ   := $(LIB_SRC:.c=.o)
LIB_HDR   := include/mm.h $(wildcard $(addsuffix /*.h,$(LIB_DIRS)))
SONAME    := libmm.so.$(ABI_VERSION)
SHARED    := lib/libmm.so.$(VERSION)
STATIC    := lib/libmm.a

EXAMPLES  := $(patsubst %.c,%,$(wildcard examples/mm-*.c))
# C++17 examples using the header-only wrapper bindings/cpp/mm.hpp.
CXX_EXAMPLES := $(patsubst %.cpp,%,$(wildcard examples/cpp/mm-*.cpp))
# mm-server (server/), where libmicrohttpd is found. It reuses libmm's JSON reader and writer,
# so it links the library statically, as mm-bench does; its command line is examples/args.h.
MHD_LIBS  := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
ifneq ($(MHD_LIBS),)
SERVER    := server/mm-server
# The server's test drives it with the official openai npm client, pinned in its lock file.
SERVER_TEST_DEPS := tests/server/node_modules/openai/package.json
endif
# Check suites: each tests/test_*.c is one binary linked statically, so it can reach internals.
SUITES    := $(patsubst %.c,%,$(wildcard tests/test_*.c))
# Other test programs built from tests/*.c (conformance runners etc.).
TOOLS     := $(patsubst %.c,%,$(filter-out tests/test_%.c,$(wildcard tests/*.c)))

.PHONY: all test bench install uninstall clean demo eval fuzz valgrind tsan version
all: $(SHARED) lib/$(SONAME) lib/libmm.so $(STATIC) $(EXAMPLES) $(CXX_EXAMPLES) $(SERVER) $(SUITES) $(TOOLS)

lib/%.o: lib/%.c $(LIB_HDR) Makefile
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(SHARED): $(LIB_OBJ) lib/libmm.map
	$(CC) -shared -o $@ $(LIB_OBJ) -Wl,-soname,$(SONAME) -Wl,--version-script=lib/libmm.map \
	    -Wl,--no-undefined $(SAN_FLAGS) $(DEP_LIBS)

lib/$(SONAME) lib/libmm.so: $(SHARED)
	ln -sf libmm.so.$(VERSION) $@

$(STATIC): $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $(LIB_OBJ)

# Examples link against the shared object, as a user's program would: in the tree with an rpath
# to ../lib, and again by `make install` with one to LIBDIR (link_program SOURCE, OUTPUT, RPATH).
link_program = $(CC) $(APP_CFLAGS) $(1) -o $(2) -Llib -lmm -Wl,-rpath,'$(3)' -lm
examples/%: examples/%.c examples/args.h include/mm.h lib/libmm.so lib/$(SONAME)
	$(call link_program,$<,$@,$$ORIGIN/../lib)

# mm-bench drives libmm through the public API but links it statically: the linker wraps the
# library's BLAS calls so the benchmark can count them, and it reads tensor sizes with the GGUF
# reader.
BENCH_WRAP := -Wl,--wrap=cblas_sgemm -Wl,--wrap=cblas_sgemv
examples/mm-bench: examples/mm-bench.c examples/args.h $(STATIC) $(LIB_HDR)
	$(CC) $(APP_CFLAGS) $(LIB_INC) $(DEP_CFLAGS) $< -o $@ $(STATIC) $(BENCH_WRAP) $(DEP_LIBS)

server/mm-server: $(wildcard server/*.c server/*.h) examples/args.h $(STATIC) $(LIB_HDR)
	$(CC) $(APP_CFLAGS) $(LIB_INC) -Iexamples $(DEP_CFLAGS) $(shell pkg-config --cflags libmicrohttpd) \
	    $(filter %.c,$^) -o $@ $(STATIC) $(MHD_LIBS) $(DEP_LIBS)

# mm-quantize uses the GGUF reader and writer and the type table: it links the static library.
examples/mm-quantize: examples/mm-quantize.c examples/args.h $(STATIC) $(LIB_HDR)
	$(CC) $(APP_CFLAGS) $(LIB_INC) $(DEP_CFLAGS) $< -o $@ $(STATIC) $(DEP_LIBS)

examples/cpp/%: examples/cpp/%.cpp bindings/cpp/mm.hpp examples/args.h include/mm.h lib/libmm.so lib/$(SONAME)
	$(CXX) $(APP_CXXFLAGS) $< -o $@ -Llib -lmm -Wl,-rpath,'$$ORIGIN/../../lib'

tests/test_%: tests/test_%.c tests/testutil.h $(STATIC)
	$(CC) $(TEST_CFLAGS) $< -o $@ $(STATIC) $(CHECK_LIBS) $(DEP_LIBS)

$(TOOLS): %: %.c $(STATIC)
	$(CC) $(TEST_CFLAGS) $< -o $@ $(STATIC) $(DEP_LIBS)

test: all $(SERVER_TEST_DEPS)
	@tests/run_all.sh

tests/server/node_modules/openai/package.json: tests/server/package-lock.json
	npm ci --prefix tests/server --no-audit --no-fund

version:
	@echo $(VERSION) $(ABI_VERSION)

# The bundled scenes model (models/README.md): describe the bundled images; measure held-out
# accuracy (EVAL_SEED, EVAL_COUNT scenes; EVAL_FLAGS go to mm-eval, e.g. --markdown).
MODELS     ?= models
EVAL_SEED  ?= 2002
EVAL_COUNT ?= 500
demo: all
	@tools/demo.sh $(MODELS)

eval: all
	@EVAL_FLAGS="$(EVAL_FLAGS)" tools/eval.sh $(MODELS) $(EVAL_SEED) $(EVAL_COUNT)

# Every test program under valgrind memcheck (slow; tests/valgrind.sh prints the summary).
valgrind: all
	@tests/valgrind.sh

# ThreadSanitizer on the thread and cancellation cases of tests/test_robust.c and the thread pool
# cases of tests/test_ops.c, with the library
# built for it into build-tsan/. OpenBLAS is not instrumented: one BLAS thread keeps its work on
# the calling thread, where TSan sees it.
TSAN_OBJ := $(patsubst lib/%.c,build-tsan/%.o,$(LIB_SRC))

tsan: build-tsan/test_robust build-tsan/test_ops
	OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 CK_RUN_CASE=threads build-tsan/test_robust
	OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 CK_RUN_CASE=cancel build-tsan/test_robust
	OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 CK_RUN_CASE=threads build-tsan/test_ops

build-tsan/%.o: lib/%.c $(LIB_HDR) Makefile
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -fsanitize=thread -c $< -o $@

build-tsan/test_%: tests/test_%.c tests/testutil.h tests/tiny_llama.h $(TSAN_OBJ)
	$(CC) $(TEST_CFLAGS) -fsanitize=thread $< $(TSAN_OBJ) -o $@ $(CHECK_LIBS) $(DEP_LIBS)

# libFuzzer targets of tests/fuzz/targets.h, built with clang into tests/fuzz/build/ (library
# objects instrumented for coverage there too); run them with tests/fuzz/run.sh.
FUZZ_CC      ?= clang
FUZZ_TARGETS := gguf image tokenizer chatjson audio video points
FUZZ_CFLAGS  := -std=c11 $(WARN) -g -O1 -D_GNU_SOURCE -Iinclude $(LIB_INC) $(DEP_CFLAGS) \
                -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_OBJ     := $(patsubst lib/%.c,tests/fuzz/build/%.o,$(LIB_SRC))

fuzz: $(patsubst %,tests/fuzz/build/fuzz_%,$(FUZZ_TARGETS))
.SECONDARY: $(FUZZ_OBJ)

tests/fuzz/build/%.o: lib/%.c $(LIB_HDR) Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DMM_BUILDING -fsanitize=fuzzer-no-link -c $< -o $@

tests/fuzz/build/fuzz_%: tests/fuzz/fuzz.c tests/fuzz/targets.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DFUZZ_TARGET='"$*"' $< $(FUZZ_OBJ) -o $@ \
	    $(DEP_LIBS)

# The replay suite runs the fuzz targets on the committed inputs.
tests/test_fuzz_replay: tests/fuzz/targets.h
tests/test_misuse tests/test_robust tests/test_resources: tests/tiny_llama.h

# Random-weight models of realistic shapes (written once into BENCH_DIR, several GB), then
# mm-bench on each with 1 and 2 threads; see docs/performance.md.
BENCH_DIR ?= $(HOME)/.cache/libmm-bench
bench: examples/mm-bench
	/usr/bin/python3 tools/bench_models.py $(BENCH_DIR)
	tools/bench.sh $(BENCH_DIR)

# The headers (mm.h, the C++ wrapper mm.hpp), the libraries, libmm.pc and the command-line
# programs. The programs that link libmm.so are linked again for their new place, with an rpath
# to LIBDIR; mm-bench holds the library statically.
# Installing as root into a system prefix refreshes the loader's cache (ldconfig); for any other
# prefix, programs find libmm.so.1 through -Wl,-rpath,$$(pkg-config --variable=libdir libmm).
INSTALLED_PROGRAMS := $(notdir $(EXAMPLES))
# Linked with the static library (they reach internals): installed as built.
STATIC_PROGRAMS := mm-bench mm-quantize
SYSTEM_PREFIXES    := /usr /usr/local
define refresh_loader_cache
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && [ -n "$(filter $(SYSTEM_PREFIXES),$(PREFIX))" ] \
	    && command -v ldconfig >/dev/null; then echo ldconfig; ldconfig; fi
endef

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/mm.h bindings/cpp/mm.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libmm.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmm.so
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	sed -e 's|@prefix@|$(PREFIX)|' -e 's|@libdir@|$(LIBDIR)|' -e 's|@includedir@|$(INCLUDEDIR)|' \
	    -e 's|@version@|$(VERSION)|' -e 's|@requires_soxr@|$(if $(filter 1,$(WITH_SOXR)), soxr)|' \
	    -e 's|@libs_ffmpeg@|$(if $(filter 1,$(WITH_FFMPEG)), $(FFMPEG_LIBS))|' \
	    pkgconfig/libmm.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/libmm.pc
	for p in $(filter-out $(STATIC_PROGRAMS),$(INSTALLED_PROGRAMS)); do \
	    $(call link_program,examples/$$p.c,$(DESTDIR)$(BINDIR)/$$p,$(LIBDIR)) || exit 1; \
	done
	install -m 755 $(addprefix examples/,$(STATIC_PROGRAMS)) $(DESTDIR)$(BINDIR)/
	$(refresh_loader_cache)

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/mm.h $(DESTDIR)$(INCLUDEDIR)/mm.hpp \
	    $(DESTDIR)$(LIBDIR)/libmm.so* $(DESTDIR)$(LIBDIR)/libmm.a $(DESTDIR)$(PKGCONFIGDIR)/libmm.pc \
	    $(addprefix $(DESTDIR)$(BINDIR)/,$(INSTALLED_PROGRAMS))
	$(refresh_loader_cache)

clean:
	rm -f lib/*.o lib/*/*.o lib/libmm.so* $(STATIC) $(EXAMPLES) $(CXX_EXAMPLES) $(SUITES) $(TOOLS) \
	    server/mm-server
	rm -rf tests/fuzz/build build-tsan
