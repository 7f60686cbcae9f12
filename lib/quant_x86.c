/* Dot kernels for x86 (AVX2), chosen at run time by mmi_quant_kernels (see quant.h). */
#include "quant.h"

void mmi_quant_kernels_x86(mmi_kernels *k)
{
    (void)k;
}
