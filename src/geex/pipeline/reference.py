"""Published scores of CodeGeeX-13B, shown beside a run's own for scale.

HumanEval-X pass@1 per language, as reported in the CodeGeeX2 repository's README (THUDM,
2023) for CodeGeeX-13B (850B training tokens): 20 samples per problem at temperature 0.2,
top-p 0.95. Its HumanEval (Python) pass@1/10/100 in the same README: 22.9 / 39.6 / 60.9.
"""

CODEGEEX_13B_HUMANEVALX = {
    "Python": 0.229,
    "C++": 0.171,
    "Java": 0.200,
    "JavaScript": 0.176,
    "Go": 0.144,
    "Rust": 0.043,
}

REFERENCE_NOTE = (
    "For scale: CodeGeeX-13B, trained on 850B tokens, scores HumanEval-X pass@1 of 22.9% "
    "(Python), 17.1% (C++), 20.0% (Java), 17.6% (JavaScript), 14.4% (Go) and 4.3% (Rust) with "
    "20 samples per problem at temperature 0.2, top-p 0.95 (CodeGeeX2 README). The embedded "
    "set is Geex's own (10 problems per language) and has no published reference."
)
