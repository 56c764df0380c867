# Third run, on an H100 SXM (KIT_PLAN=benchmarks/llamacpp_gpu/plan-3.sh): a second Hopper card for
# what the H200 runs showed. F16 against Q4_0 and Q8_0 decode (llama.cpp's float GEMV against
# MMVQ), dense prompts in MMQ and cuBLAS, the 1B model's kernel gaps, the MoE prompt at two
# microbatches; most valuable first, FlashAttention on (fa 0 last)
MODELS=("l8b-f16 llama llama-3.1-8b F16" "l8b-q4_0 llama llama-3.1-8b Q4_0"
        "l8b-q8_0 llama llama-3.1-8b Q8_0" "l1b-q4_0 llama llama-3.2-1b Q4_0"
        "q30b-q4_0 qwen3moe qwen3-30b-a3b Q4_0")
BENCH_PLAN=("l8b-f16 args 40 -ngl 99 -p 512 -n 128 -fa 1,0 -r 3"
            "l8b-q4_0 args 40 -ngl 99 -p 512 -n 128 -fa 1,0 -r 3"
            "l8b-q8_0 args 30 -ngl 99 -p 512 -n 128 -fa 1 -r 3"
            "l1b-q4_0 args 30 -ngl 99 -p 512 -n 128 -fa 1 -r 3"
            "q30b-q4_0 args 50 -ngl 99 -p 2048 -n 128 -b 2048 -ub 512,2048 -fa 1 -r 2")
