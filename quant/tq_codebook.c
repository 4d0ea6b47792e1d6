/*
 * Lloyd-Max codebooks for TurboQuant.
 *
 * After a random rotation, one coordinate x of a unit vector in R^n has the
 * density proportional to (1 - x^2)^((n-3)/2) on [-1, 1] (TurboQuant, Zandieh
 * et al. 2025, section 3.1). We work in t = x * sqrt(n), which has unit
 * variance and tends to N(0, 1); at small n the exact density has visibly
 * lighter tails than the Gaussian, so the codebook is solved for the exact
 * one rather than taken from Max's (1960) Gaussian tables.
 *
 * Lloyd's algorithm alternates the two optimality conditions of a scalar
 * quantizer: boundaries at the midpoints of neighbouring centroids, centroids
 * at the conditional means of their cells. The density is tabulated on a
 * uniform grid with prefix sums of w, w*t and w*t^2, so each iteration costs
 * O(levels) whatever the grid size, and the distortion of a codebook is read
 * off the same sums. Starting from the quantiles of the distribution, a few
 * hundred iterations settle every bit width to well below float precision.
 */
#include <math.h>
#include <string.h>

#include "quant/quant.h"

enum { GRID = 1 << 18, MAX_ITER = 5000 };

typedef struct grid {
    double lo, step;
    double *w, *wt, *wtt; /* prefix sums, GRID + 1 entries each */
} grid;

static size_t grid_index(const grid *g, double t) {
    double pos = (t - g->lo) / g->step;
    if (pos <= 0)
        return 0;
    if (pos >= GRID)
        return GRID;
    return (size_t)(pos + 0.5);
}

/* Sums of w, w t, w t^2 over grid cells [a, b). */
static void cell_sums(const grid *g, size_t a, size_t b, double *w, double *wt, double *wtt) {
    *w = g->w[b] - g->w[a];
    *wt = g->wt[b] - g->wt[a];
    *wtt = g->wtt[b] - g->wtt[a];
}

rotor_status tq_codebook_solve(const rotor_allocator *a, unsigned bits, size_t n,
                               tq_codebook *out) {
    CM_RETURN_IF(bits < 1 || bits > TQ_MAX_BITS, ROTOR_ERR_INVALID_ARGUMENT,
                 "codebook bits must be 1 to %d, not %u", TQ_MAX_BITS, bits);
    CM_RETURN_IF(n < 2, ROTOR_ERR_DIMENSION,
                 "a codebook needs at least 2 rotated dimensions, not %zu", n);
    memset(out, 0, sizeof *out);
    const unsigned levels = 1u << bits;

    grid g;
    double *mem = cm_alloc(a, 3 * (GRID + 1) * sizeof(double), "codebook grid");
    if (mem == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    g.w = mem;
    g.wt = mem + GRID + 1;
    g.wtt = mem + 2 * (GRID + 1);
    /* Beyond 12 standard deviations the Gaussian limit holds less than
     * 1e-32 of the mass; the exact density ends at sqrt(n). */
    double half = fmin(sqrt((double)n), 12.0);
    g.lo = -half;
    g.step = 2 * half / GRID;
    const double expo = ((double)n - 3) / 2;
    g.w[0] = g.wt[0] = g.wtt[0] = 0;
    for (size_t i = 0; i < GRID; i++) {
        double t = g.lo + ((double)i + 0.5) * g.step; /* midpoints avoid the n = 2 poles */
        double f = exp(expo * log1p(-t * t / (double)n));
        g.w[i + 1] = g.w[i] + f;
        g.wt[i + 1] = g.wt[i] + f * t;
        g.wtt[i + 1] = g.wtt[i] + f * t * t;
    }
    const double total = g.w[GRID];
    for (size_t i = 0; i <= GRID; i++) {
        g.w[i] /= total;
        g.wt[i] /= total;
        g.wtt[i] /= total;
    }

    /* Start from the centres of equal-mass cells. */
    double c[256], bnd[257];
    {
        size_t i = 0;
        for (unsigned j = 0; j < levels; j++) {
            double target = ((double)j + 0.5) / levels;
            while (i < GRID && g.w[i + 1] < target)
                i++;
            c[j] = g.lo + ((double)i + 0.5) * g.step;
        }
    }
    double mse = 0;
    for (int iter = 0; iter < MAX_ITER; iter++) {
        bnd[0] = g.lo;
        bnd[levels] = -g.lo;
        for (unsigned j = 1; j < levels; j++)
            bnd[j] = (c[j - 1] + c[j]) / 2;
        double moved = 0;
        mse = 0;
        for (unsigned j = 0; j < levels; j++) {
            double w, wt, wtt;
            cell_sums(&g, grid_index(&g, bnd[j]), grid_index(&g, bnd[j + 1]), &w, &wt, &wtt);
            double cj = w > 0 ? wt / w : c[j];
            moved = fmax(moved, fabs(cj - c[j]));
            c[j] = cj;
            mse += wtt - 2 * cj * wt + cj * cj * w;
        }
        if (moved < 1e-9)
            break;
    }
    cm_free(a, mem);

    /* The density is symmetric; make the codebook exactly so. */
    for (unsigned j = 0; j < levels / 2; j++) {
        double m = (c[levels - 1 - j] - c[j]) / 2;
        c[j] = -m;
        c[levels - 1 - j] = m;
    }
    out->bits = bits;
    out->levels = levels;
    for (unsigned j = 0; j < levels; j++)
        out->centroid[j] = (float)c[j];
    for (unsigned j = 0; j + 1 < levels; j++)
        out->boundary[j] = (float)((c[j] + c[j + 1]) / 2);
    out->mse = mse;
    return ROTOR_OK;
}
