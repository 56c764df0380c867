# Second H200 run (KIT_PLAN=benchmarks/llamacpp_gpu/plan-2.sh), most valuable first: the MoE
# prompt against the microbatch (-ub 128..4096); kernel gaps (decode with and without CUDA
# graphs, 1B and 8B); a K-quant 8B over prompt lengths; decode at depth; 8192-token prompts
MODELS=("q30b-q4_0 qwen3moe qwen3-30b-a3b Q4_0" "l1b-q4_0 llama llama-3.2-1b Q4_0"
        "l8b-q4_0 llama llama-3.1-8b Q4_0" "l8b-q4_k llama llama-3.1-8b Q4_K")
BENCH_PLAN=("q30b-q4_0 args 60 -ngl 99 -p 2048 -n 0 -b 4096 -ub 128,256,512,1024,2048,4096 -fa 1 -r 3"
            "q30b-q4_0 args 40 -ngl 99 -p 0 -n 128 -d 0,8192 -fa 0,1 -r 3"
            "l1b-q4_0 args 30 -ngl 99 -p 512 -n 128 -fa 1 -r 3"
            "l1b-q4_0 args 30 GGML_CUDA_DISABLE_GRAPHS=1 -ngl 99 -p 0 -n 128 -fa 1 -r 3"
            "l8b-q4_0 args 30 GGML_CUDA_DISABLE_GRAPHS=1 -ngl 99 -p 0 -n 128 -fa 1 -r 3"
            "l8b-q4_0 args 40 -ngl 99 -p 0 -n 128 -d 8192 -fa 0,1 -r 2"
            "l8b-q4_k args 60 -ngl 99 -p 512,2048 -n 128 -b 2048 -ub 512 -fa 0,1 -r 3"
            "l8b-q4_0 args 40 -ngl 99 -p 8192 -n 0 -b 8192 -ub 512,2048 -fa 0,1 -r 2")
