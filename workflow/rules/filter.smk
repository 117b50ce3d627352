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
        settings=PARAMS["filter"],
        reference=reference_args,
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/filter/{person}.log",
    threads: 2
    shell:
        "facepipe filter --person {wildcards.person} --faces {input.faces:q} {params.reference}"
        " --out {output.dataset:q} --report {output.report:q}"
        " --sheet {output.sheet:q} --threads {threads} 2>&1 | tee {log:q}"
