/* The chat templates libmm knows (see chat.h). */
#include "chat.h"

#include <string.h>

#include "status.h"

/* LLaVA-1.5 (vicuna v1), as HF's llava-1.5 processor writes a prompt: "{system} USER: <image>\n
 * {prompt} ASSISTANT:"; answers end with </s> as in LLaVA's own training conversations. The
 * space after the system text is the space prefix of the next message's tokenization. */
static const mmi_chat_template llava = {
    .name = "llava",
    .prefix = {"", "USER: ", "ASSISTANT: "},
    .suffix = {"", " ", ""},
    .generation_prompt = "ASSISTANT:",
    .end_token = "</s>",
    .after_end = "",
    .turn_start = "",
    .image_suffix = "\n",
};

static const mmi_chat_template chatml = {
    .name = "chatml",
    .prefix = {"<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n"},
    .suffix = {"<|im_end|>\n", "<|im_end|>\n", ""},
    .generation_prompt = "<|im_start|>assistant\n",
    .end_token = "<|im_end|>",
    .after_end = "\n",
    .turn_start = "",
    .image_suffix = "\n",
};

/* Phi-3: "<|system|>\n{system}<|end|>\n<|user|>\n{text}<|end|>\n<|assistant|>\n{answer}<|end|>\n". */
static const mmi_chat_template phi3 = {
    .name = "phi3",
    .prefix = {"<|system|>\n", "<|user|>\n", "<|assistant|>\n"},
    .suffix = {"<|end|>\n", "<|end|>\n", ""},
    .generation_prompt = "<|assistant|>\n",
    .end_token = "<|end|>",
    .after_end = "\n",
    .turn_start = "",
    .image_suffix = "\n",
};

/* Llama-2 chat: "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST]
 * {user} [/INST]", the system text inside the first instruction. */
static const mmi_chat_template llama2 = {
    .name = "llama2",
    .prefix = {"[INST] <<SYS>>\n", "[INST] ", " "},
    .suffix = {"\n<</SYS>>\n\n", " [/INST]", " "},
    .generation_prompt = "",
    .end_token = "</s>",
    .after_end = "",
    .turn_start = "<s>",
    .image_suffix = "\n",
    .system_in_user = 1,
};

/* No template: messages are added as written. */
static const mmi_chat_template raw = {
    .name = "raw",
    .prefix = {"", "", ""},
    .suffix = {"", "", ""},
    .generation_prompt = "",
    .end_token = "",
    .after_end = "",
    .turn_start = "",
    .image_suffix = "",
};

const mmi_chat_template *mmi_chat_template_by_name(const char *name)
{
    static const mmi_chat_template *const all[] = {&llava, &chatml, &phi3, &llama2, &raw};
    if (strcmp(name, "vicuna") == 0)
        return &llava;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, all[i]->name) == 0)
            return all[i];
    return NULL;
}

const mmi_chat_template *mmi_chat_template_detect(const char *t)
{
    if (!t)
        return NULL;
    const mmi_chat_template *named = mmi_chat_template_by_name(t);
    if (named)
        return named;
    /* Marks that only one family's Jinja text carries. */
    if (strstr(t, "<|im_start|>"))
        return &chatml;
    if (strstr(t, "<|user|>") && strstr(t, "<|end|>"))
        return &phi3;
    if (strstr(t, "[INST]"))
        return &llama2;
    if (strstr(t, "ASSISTANT:"))
        return &llava;
    return NULL;
}

mm_status mmi_chat_template_choose(const char *option, const char *file_template, int has_vision,
                                   const mmi_chat_template **out)
{
    if (option) {
        *out = mmi_chat_template_by_name(option);
        if (!*out)
            return mmi_fail(MM_ERR_ARG, "chat_template '%s' is unknown (llava, vicuna, chatml, "
                            "phi3, llama2, raw)", option);
        return MM_OK;
    }
    *out = mmi_chat_template_detect(file_template);
    if (!*out)
        *out = has_vision ? &llava : &raw;
    return MM_OK;
}

int mmi_chat_role_from_name(const char *name, mmi_chat_role *out)
{
    static const char *const names[MMI_N_ROLES] = {"system", "user", "assistant"};
    for (int i = 0; i < MMI_N_ROLES; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (mmi_chat_role)i;
            return 1;
        }
    return 0;
}
