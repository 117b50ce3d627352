rule convert:
    input:
        unpack(swap_model),
        media=swap_download,
        frames="results/frames/swaps/{swap}",
        faces="results/faces/swaps/{swap}",
        source=swap_source_dataset,
    output:
        out=f"results/swaps/{{swap}}.{PARAMS['convert']['format']}",
        report="results/swaps/{swap}.json",
    wildcard_constraints:
        swap=swap_names("video"),
    params:
        settings=dependency(PARAMS, "convert"),
        code=CODE["convert"],
        source=swap_from,
        model=swap_model_dir,
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/convert/{swap}.log",
    benchmark:
        "logs/benchmarks/convert/{swap}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    shell:
        "facepipe convert --frames {input.frames:q} --faces {input.faces:q} --model {params.model:q}"
        " --from {params.source} --source-dataset {input.source:q} --out {output.out:q}"
        " --report {output.report:q} --threads {threads} 2>&1 | tee {log:q}"


# Photos in, photos out: the same stage, writing a folder of swapped photos.
use rule convert as convert_photos with:
    output:
        out=directory("results/swaps/{swap}"),
        report="results/swaps/{swap}.json",
    wildcard_constraints:
        swap=swap_names("photos"),
