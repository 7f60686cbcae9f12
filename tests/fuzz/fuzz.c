/* libFuzzer entry point of one target of targets.h, named when building:
 * clang -fsanitize=fuzzer,address,undefined -DFUZZ_TARGET='"gguf"' ... (see `make fuzz`). */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static size_t target = SIZE_MAX;
    for (size_t i = 0; target == SIZE_MAX && i < sizeof fuzz_targets / sizeof fuzz_targets[0]; i++)
        if (strcmp(fuzz_targets[i].name, FUZZ_TARGET) == 0)
            target = i;
    if (target == SIZE_MAX)
        abort(); /* built for a target targets.h does not define */
    return fuzz_one(target, data, size);
}
