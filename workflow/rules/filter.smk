rule filter:
    input:
        faces=person_faces,
        reference=person_reference,
    output:
        dataset=directory("results/datasets/{person}"),
        report="results/reports/filter/{person}.json",
        sheet=report(
            "results/reports/filter/{person}.jpg",
            caption="../report/filter.rst",
            category="People",
            labels={"person": "{person}", "figure": "kept and dropped faces"},
        ),
    params:
        settings=dependency(PARAMS, "filter"),
        code=CODE["filter"],
        who=person_args,
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/filter/{person}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "facepipe filter {params.who} --faces {input.faces:q}"
        " --out {output.dataset:q} --report {output.report:q}"
        " --sheet {output.sheet:q} --threads {threads} 2>&1 | tee {log:q}"


# The pretraining sources' faces, whoever they show: one pool, no identity check.
use rule filter as filter_pool with:
    input:
        faces=pool_faces,
    output:
        dataset=directory("results/pretrain/faces"),
        report="results/reports/pretrain/faces.json",
        sheet=report(
            "results/reports/pretrain/faces.jpg",
            caption="../report/pool.rst",
            category="People",
            labels={"person": "pretraining pool", "figure": "kept and dropped faces"},
        ),
    params:
        settings=dependency(PARAMS, "filter"),
        code=CODE["filter"],
        who="--person pool --anyone",
    log:
        "logs/filter/pretrain-pool.log",
