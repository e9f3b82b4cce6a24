"""The engine's one tuning table: every knob once, with why it has its value and where that was measured.

The engine reads each knob as ``tuning.NAME`` when it runs, so a knob can be changed at run time
(``python scripts/profile_layers.py baseline --ab engine.tuning.CONV_BLOCK_BYTES=2**22,2**21``
times two values against each other). The measurements behind each reason are in the
performance notes (tutorial/performance-notes.md, "For contributors" in the tutorial).

Machines: "AMD" is the 2-core AMD EPYC VM (AVX-512, 1 MiB of L2 a core), "Intel" the 2-core
Intel Xeon VM (AVX-512, 2 MiB of L2 a core).
"""
from __future__ import annotations

# ----------------------------------------------------------------------------------- threads
#: Work under this many bytes runs as one block on the calling thread.
SMALL_WORK_BYTES = 2**17
#: Memory-bound passes (ReLU, norms, pooling) under this many bytes stay on the calling thread.
SMALL_PASS_BYTES = 2**21
#: Zero-bordered (padded) buffers kept per thread for the next call (engine.parallel.zero_bordered).
BORDERED_KEEP = 16
#: Matrix products of at least this many multiply-adds are split into one block per worker.
GEMM_SPLIT_MIN_MACS = 2**24
#: Models whose forward pass over a batch costs fewer FLOPs run with BLAS's threads, not ours.
SMALL_MODEL_FLOPS = 2**28
#: Seconds a worker thread spins waiting for its next block before it goes to sleep.
SPIN_SECONDS = 0.02

# ----------------------------------------------------------------------------------- blocks
#: Bytes of one block of an elementwise or per-channel pass (ReLU, BatchNorm, max-pool).
BLOCK_BYTES = 2**22
#: Bytes of input images per block of the pooling passes.
IMAGE_BLOCK_BYTES = 2**22
#: Values in one "wide row" of channels-last per-channel work (C values per row are too few).
WIDE_VALUES = 8192
#: Bytes of one block of LayerNorm2D's rows (about four such arrays are in use at once).
LAYERNORM_BLOCK_BYTES = 2**20
#: Elements per block of the float32 GELU (few blocks: each block is some twenty NumPy calls).
GELU_BLOCK = 2**18
#: Bytes of one parameter slice in Adam's update (five such slices are in use at once).
ADAM_BLOCK_BYTES = 2**18
#: Parameters of at most this many bytes take Adam's step together, as one flat array.
ADAM_FLAT_BYTES = 2**18

# ----------------------------------------------------------------------------------- copies
#: Pixels of at most this many bytes (C values) are copied as single items.
PIXEL_ITEM_BYTES = 32
#: A pooling view whose innermost runs hold at most this many values is copied out first.
SHORT_RUN = 16

# ----------------------------------------------------------------------------------- convolution
#: Convolutions whose kh*kw*C is at most this build and keep their whole column matrix.
COLUMNS_MAX_K = 64
#: Bytes of column rows in one block of the gather convolution.
CONV_BLOCK_BYTES = 2**21
#: ... but at least this many rows a block, so each product reads its weights for enough rows.
MIN_BLOCK_ROWS = 512
#: The banded path replaces the column matrix when one window row has at most this many values.
BAND_MAX_RUN = 32
#: ... as long as the band's zeros cost at most this factor in products (padded width / kw).
BAND_MAX_WASTE = 8
#: An output row is cut into segments as long as a segment keeps this many output columns.
BAND_MIN_COLUMNS = 64
#: The banded input rows' runs are copied one run per item up to this many bytes.
BAND_ITEM_BYTES = 256
#: Bytes of output per block of the depthwise kernels.
DEPTHWISE_BLOCK_BYTES = 2**19
#: Depthwise convolutions sum their k² taps in one einsum on the CPU (else k² passes).
DEPTHWISE_EINSUM = True
#: Winograd 3×3 convolutions: "auto" (the rule below), "off", or "f2" / "f4" on every 3×3 stride-1 layer.
WINOGRAD = "auto"
#: ... "auto": only layers with at least this many input and output channels ...
WINOGRAD_MIN_CHANNELS = 64
#: ... and at least this many 2×2 output tiles an image ...
WINOGRAD_MIN_TILES = 4
#: ... and, on maps smaller than 8×8, at least this many input and output channels.
WINOGRAD_SMALL_MAP_CHANNELS = 128
#: F(4×4, 3×3) instead of F(2×2, 3×3) for outputs at least this large on each side ...
WINOGRAD_F4_MIN_SIZE = 7
#: ... in float32 too (its rounding error is measured in the performance notes).
WINOGRAD_F4_FLOAT32 = True
#: Bytes of transformed tiles (V and M) in one block of the Winograd path ...
WINOGRAD_BLOCK_BYTES = 2**20
#: ... but at least this many times the bytes of the transformed kernel U, which every block reads whole.
WINOGRAD_KERNEL_SHARE = 1
#: dW by Winograd's tiles too (else by the column matrix of :mod:`engine.gather`).
WINOGRAD_WEIGHT_GRAD = True
#: 5×5 stride-1 layers by F(2×2, 5×5) too, under the same channel and tile rule.
WINOGRAD_5X5 = True

# ----------------------------------------------------------------------------------- inference
#: In evaluation mode on the CPU, a plain Linear layer computes yᵀ = W xᵀ and returns its transpose.
LINEAR_EVAL_TRANSPOSED = True
#: In evaluation mode, BatchNorm2D after a convolution is folded into its weights (engine.inference).
FOLD_BATCHNORM = True
#: In evaluation mode, a ReLU or ReLU6 whose input nothing else reads overwrites it (engine.inference).
INPLACE_ACTIVATIONS = True
#: ... and where that input comes from a 1x1 or depthwise convolution (its BatchNorm2D folded in), the
#: convolution applies it to each block of its output while it is in cache (engine.inference).
FUSE_ACTIVATIONS = True
#: At evaluation, a ConvNeXt block folds its layer scale into pwconv2 when N*H*W is at least this
#: many times pwconv2's inputs (4C): the exact check of the folded weights reads 4C*C values (engine.blocks).
LAYER_SCALE_FOLD_ROWS = 1
#: Stride-1 depthwise einsums run over whole output rows (OW*C values a loop), not pixels (C values).
DEPTHWISE_ROWS = True
#: At evaluation, an MBConv block runs channel-major with its depthwise convolution as one matrix a
#: channel where that matrix has at most this many entries for each weight it holds (0: never).
DEPTHWISE_MATRIX_MAX_WASTE = 4
#: ... cutting the output rows into strips with a matrix each, as long as a strip keeps this many pixels.
DEPTHWISE_STRIP_MIN_PIXELS = 64
#: Bytes of one block of channels (their input and output, all images) in the channel-major blocks.
CHANNEL_MAJOR_BLOCK_BYTES = 2**21

#: name -> (why this value, where it was measured). One row per knob above; a test keeps them in step.
TABLE = {
    "SMALL_WORK_BYTES": ("handing a block to a worker costs 50-100 us; less work than this is not worth it",
                         "Intel"),
    "SMALL_PASS_BYTES": ("two cores make a memory-bound pass at most 1.4x faster: small passes lose to the "
                         "hand-off; 1 MiB measured 4 % slower on BaselineCNN", "AMD and Intel"),
    "BORDERED_KEEP": ("no zeroed padded buffer per layer and call: ResNet18's training step B/A 0.955 (4 of 4 "
                      "pairs), EfficientNet-Lite0's inference step 0.986 (15 of 20); a pass of EfficientNet-Lite0 "
                      "uses 12 shapes (25 MiB on one thread), ResNet18's training step 4 (8.5 MiB)", "AMD"),
    "GEMM_SPLIT_MIN_MACS": ("smaller products lose more to splitting than the second core gives back", "Intel"),
    "SMALL_MODEL_FLOPS": ("LeNet-5 (53 MFLOP a batch) steps faster on BLAS threads (5.9 vs 6.1-8.5 ms), "
                          "BaselineCNN (954 MFLOP) and larger 1.1-1.3x faster on ours", "Intel"),
    "SPIN_SECONDS": ("waking a sleeping thread costs 50-100 us on a VM whose idle cores halt; spinning "
                     "between the blocks of one step avoids it (BaselineCNN step 36.6 -> 35.6 ms)", "Intel"),
    "BLOCK_BYTES": ("each block costs tens of us of set-up; BatchNorm2D forward 5.9 ms in 64 KiB blocks, "
                    "2.5 ms in 1 MiB, 2.1 ms in 4 MiB", "Intel"),
    "IMAGE_BLOCK_BYTES": ("max-pool forward on 64x28x28x32: 2.3 ms in 512 KiB blocks, 1.6 ms in 4 MiB",
                          "Intel"),
    "WIDE_VALUES": ("a NumPy inner loop per row of C values costs as much as a few hundred values "
                    "(C=32: 1.08 vs 0.19 ms)", "Intel"),
    "LAYERNORM_BLOCK_BYTES": ("four arrays of a block stay in a 2 MiB L2", "Intel"),
    "GELU_BLOCK": ("blocks instead of whole-array passes, which went to memory twenty times (Intel, 2**16); "
                   "on AMD 2**18 against 2**16: ConvNeXt-Tiny inference step B/A 0.86 (12 of 12 pairs), "
                   "training step 1.00 (5 of 6); 2**19 no better (1.01)", "AMD and Intel"),
    "ADAM_BLOCK_BYTES": ("five slices of 256 KiB stay in L2 while the moments are updated", "Intel"),
    "ADAM_FLAT_BYTES": ("small parameters (biases, norms) take one flat step instead of one call each",
                        "Intel"),
    "PIXEL_ITEM_BYTES": ("copying a pixel of 6 float32 channels as one item is 3.7x faster; the same "
                         "from 16 channels on", "Intel"),
    "SHORT_RUN": ("a ufunc over runs of few values is several times slower than over a contiguous copy "
                  "(LeNet's 6- and 16-channel maps)", "Intel"),
    "COLUMNS_MAX_K": ("thin first layers (5x5 grey, 3x3 RGB) keep their small column matrix for backward",
                      "Intel"),
    "CONV_BLOCK_BYTES": ("BaselineCNN step 5-9 % faster at 2 MiB than 4 MiB (1 MiB of L2 a core); the "
                         "same on Intel", "AMD"),
    "MIN_BLOCK_ROWS": ("VGG16's 16x16 layers run one image a block: 256 rows 5 % slower than 4 MiB "
                       "blocks, 512 rows 2 % faster", "AMD"),
    "BAND_MAX_RUN": ("window rows of at most 32 values (LeNet's 5x5 on 1 and 6 channels) copy too "
                     "slowly for a column matrix", "Intel"),
    "BAND_MAX_WASTE": ("the band multiplies Wp/kw times the needed products; beyond 8x it loses", "Intel"),
    "BAND_MIN_COLUMNS": ("segments narrower than 64 output columns make the product too thin", "Intel"),
    "BAND_ITEM_BYTES": ("LeNet's runs of 18 and 54 values copy 2.4x and 1.2x faster as single items",
                        "Intel"),
    "DEPTHWISE_BLOCK_BYTES": ("a few images a block keep the k² taps' passes in cache", "Intel"),
    "DEPTHWISE_EINSUM": ("one einsum over the windows view is 1.0-3.8x faster than k² multiply-adds",
                         "Intel"),
    "WINOGRAD": ("'auto' follows the rule of the next four knobs; 'off', 'f2' and 'f4' are for tests and for "
                 "timing one path against another (scripts/bench_winograd.py)", "AMD"),
    "WINOGRAD_MIN_CHANNELS": ("the tile transforms cost products over C values, the tile products C*OC: against "
                              "the column path (forward, dX, dW, batch 64, quiet): F(4x4) 0.55-0.65x on 32->32 at "
                              "32x32, 0.63-0.76x on BaselineCNN's 32->64 at 28x28, 0.56-0.74x at 14x14; 1.1x on "
                              "64->64 at 16x16, 1.4-1.6x at 32x32, 1.3-1.6x on 64->128 at 16x16, 1.5-1.6x on "
                              "128->128 at 8x8; 64 instead of 32: BaselineCNN's training step B/A 0.92 (15 of 16 "
                              "pairs), its gap variant's 0.86 (30 of 30)", "AMD"),
    "WINOGRAD_SMALL_MAP_CHANNELS": ("on 7x7 maps the tiles cover 8x8: F(4x4) 0.79-0.97x the column path on "
                                    "64->128 (BaselineCNN --variant gap), 1.3-1.6x on AlexNet's 192-384 channels",
                                    "AMD"),
    "WINOGRAD_MIN_TILES": ("VGG16's 512-channel 2x2 maps (one tile an image): F(2x2) 0.5-0.9x, F(4x4) 0.3-0.5x "
                           "the column path", "AMD (loaded)"),
    "WINOGRAD_F4_MIN_SIZE": ("from 8x8 maps up F(4x4) ran 1.5-2.5x the column path, F(2x2) 1.0-1.5x; on "
                             "AlexNet's 7x7 maps (192-384 channels) F(4x4) 1.33-1.56x, F(2x2) 1.04-1.13x (both "
                             "cover 8x8; F(4x4) with 144 tile products an image, F(2x2) 256); on 5x5 and 6x6 "
                             "both need 144; on 4x4 maps (512 channels) F(4x4)'s dW fell to 0.9-1.2x (its dU of "
                             "36*C*OC values per worker) while F(2x2) held 1.3-1.4x", "AMD"),
    "WINOGRAD_F4_FLOAT32": ("F(4x4)'s float32 error is 3-10e-6 of the largest value (the direct path's 2-7e-7; "
                            "F(2x2)'s the same as direct), far below a float32 update's rounding", "AMD"),
    "WINOGRAD_BLOCK_BYTES": ("the tile transforms are small products that run from cache: 4 images of 64 "
                             "channels at 32x32 transformed 4x faster per image than 16 images; 256 KiB-2 MiB "
                             "blocks within noise of each other on 64-128 channels", "AMD (loaded)"),
    "WINOGRAD_KERNEL_SHARE": ("U (α²·C·OC) is read whole by every block: blocks at least U's size made "
                              "forward+backward of 256 channels at 8x8 and 512 at 4x4 1.3-1.5x faster than "
                              "2 MiB blocks (7-8 images)", "AMD (loaded)"),
    "WINOGRAD_WEIGHT_GRAD": ("dW by the tiles ran 1.1-2.0x faster than by the column matrix on the ResNet18 "
                             "and VGG16 layers the rule gives to Winograd", "AMD (loaded)"),
    "WINOGRAD_5X5": ("AlexNet's 5x5 layer (64 -> 192 channels, 15x15 maps) against the column path: forward "
                     "1.08-1.31x, dX 1.46-1.78x, dW 1.11-1.62x (bench_winograd.py); AlexNet's training step "
                     "B/A 0.91 (8 of 8 pairs), its inference step 0.99 (12 of 16)", "AMD"),
    "LINEAR_EVAL_TRANSPOSED": ("the MLP's four products at batch 64: x Wᵀ 0.27 ms, W xᵀ in the chained "
                               "layout 0.23 ms (first layer 784->256: 0.18-0.24 ms against 0.15-0.16); see "
                               "the performance notes, round 14", "AMD"),
    "FOLD_BATCHNORM": ("one pass over the activations fewer per convolution and BatchNorm2D: inference "
                       "step B/A 0.90 on EfficientNet-Lite0 (7 of 8 pairs), 0.88 on ResNet18 (5 of 5); in "
                       "one-thread CPU time 0.89 and 1.03 (ResNet18's BatchNorms are 3 % of it)", "AMD"),
    "FUSE_ACTIVATIONS": ("one hand-off of blocks to the workers fewer per pair: EfficientNet-Lite0's inference "
                         "step B/A 0.94 on two cores (17 of 20 pairs); in one-thread CPU time 1.01 (8 of 20): "
                         "the pass it saves ran from cache anyway", "AMD"),
    "INPLACE_ACTIVATIONS": ("no new array to write: one-thread CPU time of the inference step B/A 0.94 on "
                            "EfficientNet-Lite0 (7 of 10 pairs), 0.97 on ResNet18 (4 of 6)", "AMD"),
    "LAYER_SCALE_FOLD_ROWS": ("the check of the 768x3072 weights (array_equal) took 0.40 ms of one-thread CPU time "
                              "while the pass it saves on 64 rows took 0.008 ms; on 4096 rows of 96 channels the "
                              "fold saved 0.07 ms and the check cost 0.007 ms: the two meet near rows = 4C", "AMD (loaded)"),
    "DEPTHWISE_ROWS": ("a NumPy inner loop of C values costs its start many times over: one-thread CPU time "
                       "B/A 0.90 on EfficientNet-Lite0's inference step (5 of 6), 0.93 on ConvNeXt-Tiny's "
                       "(6 of 6), 0.95 on EfficientNet-Lite0's training step (3 of 5)", "AMD"),
    "DEPTHWISE_MATRIX_MAX_WASTE": ("a product runs some 50 GMAC/s a core, the depthwise einsum 5-6: EfficientNet-"
                                   "Lite0's MBConv blocks at evaluation (two cores, batch 64) took 0.72-0.78x the "
                                   "time layer by layer on 4x4 and 2x2 maps (T 1.0-2.6 entries a weight), 0.79x on "
                                   "8x8 with 5x5 kernels (3.5), 1.15x on 8x8 with 3x3 stride 2 (8.5); ConvNeXt's "
                                   "16x16 stage (6.5) made the step B/A 1.03 against 4; inference step B/A 0.91 on "
                                   "EfficientNet-Lite0 (17 of 20 pairs), 0.97 on ConvNeXt-Tiny (8 of 8)", "AMD"),
    "DEPTHWISE_STRIP_MIN_PIXELS": ("ConvNeXt's 7x7 on 16x16 maps (96 channels, batch 64) in four strips of 64 "
                                   "pixels (3.5 entries a weight): 3.5 ms against the einsum's 6.3 on two cores, "
                                   "the inference step B/A 0.978 in one-thread CPU time (8 of 10 pairs); "
                                   "EfficientNet's stride-2 layers in strips of 8 and 4 pixels (one output row "
                                   "each) made their blocks 1.12x and 1.22x slower", "AMD"),
    "CHANNEL_MAJOR_BLOCK_BYTES": ("each block is a product of the expand weights with all the batch's pixels and "
                                  "C_b small products: EfficientNet-Lite0's inference step B/A 0.956 for 2 MiB "
                                  "against 512 KiB (20 of 24 pairs), 1.013 for 8 MiB against 2 MiB (8 of 24); "
                                  "ConvNeXt-Tiny 1.004 (4 of 8). The depthwise einsum's blocks (DEPTHWISE_BLOCK_BYTES) "
                                  "at 2 MiB: EfficientNet inference 0.943, its training 1.017, ConvNeXt inference "
                                  "1.039: not changed", "AMD"),
}
