"""Hostile templates: each would run for hours or build gigabytes without the budget.

Shared by the budget tests, the generated corpus and bench/template_budget.py. Each entry is
(name, template, what the error says). The templates are written for a YAML double-quoted
string, so they use single quotes only.
"""

from __future__ import annotations

STEPS = "templates may run at most 50000 loop iterations and calls in all"
TOO_LARGE = "characters or items is too large (the limit is 1048576)"
BUILT = "templates may build at most 16777216 characters in all"

HOSTILE: list[tuple[str, str, str]] = [
    ("nested loops over a long string",
     "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}", STEPS),
    ("nested loops over range", "{% for i in range(40000) %}{% for j in range(40000) %}"
     "{% endfor %}{% endfor %}", STEPS),
    ("loop over a list", "{% for a in ['x'] * 500000 %}{% endfor %}", STEPS),
    ("center", "{{ 'x'|center(1500000000) }}", f"a centred string of 1500000000 {TOO_LARGE}"),
    ("percent width", "{{ '%01500000000d' % 1 }}", f"a format's widths of 1500000000 {TOO_LARGE}"),
    ("percent precision", "{{ '%.1500000000d' % 1 }}",
     f"a format's widths of 1500000000 {TOO_LARGE}"),
    ("percent star width", "{{ '%*d' % (1500000000, 1) }}",
     f"a format's widths of 1500000000 {TOO_LARGE}"),
    ("format filter", "{{ '%01500000000d'|format(1) }}",
     f"a format's widths of 1500000000 {TOO_LARGE}"),
    ("str.format width", "{{ '{:>1500000000}'.format(1) }}",
     f"a format field's width of 1500000000 {TOO_LARGE}"),
    ("str.format many fields", "{{ ('{:>1000000}' * 100).format(*range(100)) }}",
     f"a formatted string of 2000000 {TOO_LARGE}"),
    ("doubling with ~", "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", f"a rendered value of 2097152 {TOO_LARGE}"),
    ("doubling with +", "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
     "{% set ns.s = ns.s + ns.s %}{% endfor %}", f"a sum of 2097152 {TOO_LARGE}"),
    ("repetition", "{{ 'x' * 1500000000 }}", f"a repeated value of 1500000000 {TOO_LARGE}"),
    ("repetition in a loop", "{% for i in range(40000) %}{{ 'x' * 100000 }}{% endfor %}",
     f"a rendered value of 1100000 {TOO_LARGE}"),
    ("repetition in a macro", "{% macro m() %}{% for i in range(40000) %}{{ 'x' * 100000 }}"
     "{% endfor %}{% endmacro %}{{ m() }}", BUILT),
    ("repetition in a set block", "{% set b %}{% for i in range(40000) %}{{ 'x' * 100000 }}"
     "{% endfor %}{% endset %}", BUILT),
    ("list of big strings", "{{ ['x' * 1000000] * 1000 }}",
     f"a repeated value of 1000001000 {TOO_LARGE}"),
    ("join", "{{ ('x' * 100000)|list|join('y' * 100000) }}",
     f"a joined string of 10000200000 {TOO_LARGE}"),
    ("replace", "{{ ('a' * 100000)|replace('a', 'b' * 100000) }}",
     f"a replaced string of 10000000000 {TOO_LARGE}"),
    ("str.replace", "{{ ('a' * 100000).replace('a', 'b' * 100000) }}",
     f"a replaced string of 10000000000 {TOO_LARGE}"),
    ("indent", "{{ ('x\\n' * 100000)|indent(100000) }}",
     f"an indented string of 10000300000 {TOO_LARGE}"),
    ("wordwrap", "{{ ('x' * 500000)|wordwrap(1, wrapstring='y' * 1000) }}",
     f"a wrapped string of 500500000 {TOO_LARGE}"),
    ("ljust", "{{ 'x'.ljust(1500000000) }}", f"ljust() of 1500000000 {TOO_LARGE}"),
    ("zfill", "{{ 'x'.zfill(1500000000) }}", f"zfill() of 1500000000 {TOO_LARGE}"),
    ("expandtabs", "{{ ('\\t' * 100000).expandtabs(100000) }}",
     f"expandtabs() of 10000100000 {TOO_LARGE}"),
    ("to_bytes", "{{ (1).to_bytes(1500000000, 'big') }}", f"to_bytes() of 1500000000 {TOO_LARGE}"),
    ("batch", "{{ [1]|batch(1500000000, 'x')|list }}", f"batch() of 1500000000 {TOO_LARGE}"),
    ("slice", "{{ [1]|slice(1500000000)|list }}", f"slice() of 1500000000 {TOO_LARGE}"),
    ("tojson indent", "{{ [1, [2, [3]]]|tojson(indent=1500000000) }}",
     f"an indented JSON text of 2784000000058 {TOO_LARGE}"),
    ("power", "{{ 9 ** (9 ** 9) }}", "9 ** 387420489 is too large a number"),
    ("squaring", "{% set ns = namespace(x=2 ** 2000) %}{% for i in range(30) %}"
     "{% set ns.x = ns.x * ns.x %}{% endfor %}",
     "a product of more than 4096 bits is too large a number"),
    ("exponential macro", "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
     "{% endmacro %}{{ f(40) }}", STEPS),
    ("sum of lists", "{{ range(1000)|map('string')|map('list')|sum(start=[]) }}",
     "sum() adds numbers only (start must be a number)"),
    ("recursive loop", "{% for c in 'ab' recursive %}{{ loop('ab') }}{% endfor %}",
     "template syntax error: recursive loops are not allowed in a manifest"),
    ("huge range", "{{ range(1000000000)|list }}",
     "range() of 1000000000 items: templates may run at most 50000 loop iterations"),
]
