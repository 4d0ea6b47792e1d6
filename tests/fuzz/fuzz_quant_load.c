/*
 * Fuzz target for quant_load, the decoder of quantizer parameter blocks.
 * libFuzzer hands over arbitrary bytes as a block; they are loaded through a
 * counting allocator and, when accepted, the quantizer is put to work.
 *
 * Besides "no crash, no out-of-bounds access" (the sanitizers' job), the
 * target checks the decoder's promises and aborts when one breaks:
 *   - a refusal is ROTOR_ERR_FORMAT, UNSUPPORTED or OUT_OF_MEMORY, leaves a
 *     sentence and no quantizer;
 *   - an accepted block is canonical: saving the quantizer gives back the
 *     same bytes, so nothing in it went unchecked or was silently repaired;
 *   - an accepted quantizer encodes, decodes, prepares and scans (small
 *     dimensions only, so one input stays fast), and its scan is finite;
 *   - nothing stays allocated afterwards, accepted or not.
 *
 * The allocator refuses any single block over 32 MiB, as a service
 * with a memory budget would. A block's size does not bound what it may ask
 * for: an untrained PQ block has no payload, so 56 bytes can describe pq8
 * over 2^20 dimensions, 2 GiB of zeroed codebooks (the first input libFuzzer
 * found, kept in the corpus as oom_pq8_untrained_1m_dims). That is a legal
 * quantizer, and a loader whose budget is smaller must see
 * ROTOR_ERR_OUT_OF_MEMORY with nothing leaked, which is what the cap makes
 * the fuzzer check instead of exhausting its own memory limit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"
#include "quant/quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fuzz_budget budget = {0, (size_t)32 << 20};

static void require(int cond, const char *what) { fuzz_require("fuzz_quant_load", cond, what); }

/* One vector through every operation. Inputs are finite and the state was
 * checked finite at load, so the estimates must be finite too. */
static void exercise(const quant *q) {
    const size_t d = q->dim;
    float *x = malloc(d * sizeof(float)), *out = malloc(d * sizeof(float));
    float *scratch = malloc((q->scratch_floats + 1) * sizeof(float));
    uint8_t *code = malloc(q->code_bytes);
    uint8_t *store = calloc(1, q->ops->store_bytes(q, 1));
    void *qs = aligned_alloc(64, cm_round_up(q->query_bytes, 64));
    require(x && out && scratch && code && store && qs, "out of memory in the fuzz target");
    for (size_t j = 0; j < d; j++)
        x[j] = (float)((j * 7 + 3) % 11) / 11.0f - 0.5f;
    q->ops->encode(q, x, code, scratch);
    q->ops->decode(q, code, out, scratch);
    q->ops->store(q, store, 0, code);
    q->ops->prepare(q, x, qs, scratch);
    float dist;
    q->ops->scan(q, qs, store, 0, 1, &dist);
    free(qs);
    free(store);
    free(code);
    free(scratch);
    free(out);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rotor_allocator a = fuzz_allocator(&budget);
    quant *q = NULL;
    cm_clear_error();
    rotor_status st = quant_load(data, size, &a, &q);
    if (st != ROTOR_OK) {
        require(st == ROTOR_ERR_FORMAT || st == ROTOR_ERR_UNSUPPORTED ||
                    st == ROTOR_ERR_OUT_OF_MEMORY,
                "refused with an unexpected status");
        require(q == NULL, "a refused block left a quantizer");
        require(rotor_last_error()[0] != '\0', "a refused block left no sentence");
    } else {
        require(q != NULL, "an accepted block gave no quantizer");
        require(quant_saved_size(q) == size, "the saved size differs from the block's");
        uint8_t *again = malloc(size);
        require(again != NULL, "out of memory in the fuzz target");
        require(quant_save(q, again, size) == ROTOR_OK, "an accepted block does not save");
        require(memcmp(again, data, size) == 0, "saving gives different bytes");
        free(again);
        if (q->dim <= 256)
            exercise(q);
        quant_free(q);
    }
    require(budget.live == 0, "a load leaked");
    return 0;
}
