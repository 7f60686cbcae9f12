/* libFuzzer entry point of one target of targets.h, named when building:
 * clang -fsanitize=fuzzer,address,undefined -DFUZZ_TARGET='"gguf"' ... (see `make fuzz`). */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int (*run)(const uint8_t *, size_t);
    for (size_t i = 0; !run && i < sizeof fuzz_targets / sizeof fuzz_targets[0]; i++)
        if (strcmp(fuzz_targets[i].name, FUZZ_TARGET) == 0)
            run = fuzz_targets[i].run;
    if (!run)
        abort(); /* built for a target targets.h does not define */
    return run(data, size);
}
