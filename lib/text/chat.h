/* Chat templates: the text a conversation puts around each message, and where images go.
 *
 * A message renders as  [turn_start] prefix[role] content suffix[role]  and the model's answer
 * is opened by generation_prompt. Each message is tokenized on its own, so the text between two
 * messages must not depend on being tokenized together: separators sit inside one message, or
 * come from the SentencePiece space prefix of the next (llava's "sys" + "USER: ..." tokenizes as
 * "sys USER: ..." does). Within a message the text is tokenized in one piece per image-free
 * stretch with
 * control tokens parsed (so "</s>" or "<|im_end|>" in the template become those tokens), the
 * SentencePiece space prefix applying per stretch, as llama.cpp's multimodal tool does. After a
 * generated answer the turn is closed by end_token (skipped when the answer already ended with
 * an end-of-generation token) followed by after_end. */
#ifndef MMI_CHAT_H
#define MMI_CHAT_H

#include "mm.h"

typedef enum { MMI_ROLE_SYSTEM, MMI_ROLE_USER, MMI_ROLE_ASSISTANT, MMI_N_ROLES } mmi_chat_role;

typedef struct {
    const char *name;
    const char *prefix[MMI_N_ROLES];
    const char *suffix[MMI_N_ROLES];
    const char *generation_prompt; /* opens a generated answer */
    const char *end_token;         /* closes an answer, as text ("</s>", "<|im_end|>") */
    const char *after_end;         /* text after end_token */
    const char *turn_start;        /* before every user message but the session's first */
    const char *image_suffix;      /* after each image of a message that has no markers */
    int system_in_user;            /* the system message is rendered inside the next user
                                      message (llama-2), which then has no prefix of its own */
} mmi_chat_template;

/* The marker a message's text uses for "an image goes here". */
#define MMI_IMAGE_MARKER "<image>"

/* By name: "llava" (alias "vicuna"), "chatml", "phi3", "llama2", "raw"; NULL if unknown. */
const mmi_chat_template *mmi_chat_template_by_name(const char *name);
/* The template a model file's tokenizer.chat_template (a name or a Jinja text) stands for, or
 * NULL when it is none of ours. */
const mmi_chat_template *mmi_chat_template_detect(const char *file_template);
/* The template for a session: MM_OPT_CHAT_TEMPLATE when set (MM_ERR_ARG if unknown), else the
 * file's template when recognised, else "llava" for a model with a vision encoder, else "raw". */
mm_status mmi_chat_template_choose(const char *option, const char *file_template, int has_vision,
                                   const mmi_chat_template **out);

/* "system", "user", "assistant" -> role; 0 if unknown. */
int mmi_chat_role_from_name(const char *name, mmi_chat_role *out);

#endif
