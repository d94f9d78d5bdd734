"""Writes the bad-input corpus (run: python tests/corpus/make_corpus.py); the files are committed.

Each file is small and nasty in one way. Tests read them from here, so the bytes are fixed:
the script only documents how they were made and rebuilds them if a case is added.

    csv/       subscriber imports (what an admin uploads or passes to `subscribers import`)
    series/    one folder per broken series (series.yaml + parts), each with EXPECT: the
               file name and line each problem must be reported at
    webhook/   SendGrid Event Webhook bodies
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
GOOD = ["ann@example.org", "bo@example.org"]  # every CSV file that has rows carries these two


def csv_files() -> dict[str, bytes]:
    head = "email,name,timezone,series\n"
    good = "".join(f"{e},Good {i},Europe/London,\n" for i, e in enumerate(GOOD))
    files: dict[str, bytes] = {
        "bom_crlf.csv": b"\xef\xbb\xbf"
        + (head + good + "not-an-email,X,,\n").replace("\n", "\r\n").encode(),
        "cr_only.csv": (head + good + "x@,Y,,\n").replace("\n", "\r").encode(),
        "semicolon.csv": (head + good).replace(",", ";").encode()
        + b"cy@example.org;Cy, Jr.;Nowhere/Zone;\n",
        "tab_delimited.csv": (head + good).replace(",", "\t").encode(),
        "pipe_delimited.csv": (head + good).replace(",", "|").encode(),
        "duplicate_headers.csv": (
            "email,email,name,name,tz,timezone\n"
            + "".join(f"{e},other@example.org,Good,Other,Europe/Paris,Asia/Tokyo\n" for e in GOOD)
        ).encode(),
        "nul_bytes.csv": (head + good).encode()
        + b"n\x00ul@example.org,,,\nnul2@example.org,Na\x00me,,\nnul3@example.org,,UTC\x00,\n",
        "invalid_utf8.csv": (head + good).encode()
        + b"caf\xe9@example.org,Caf\xe9,,\nok3@example.org,Ren\xe9e \xff\xfe,,\n\xc3\x28,,,\n",
        "overlong_utf8.csv": (head + good).encode() + b"\xc0\xafx@example.org,,,\n",
        "utf16.csv": "\ufeff".encode("utf-16-le") + (head + good).encode("utf-16-le"),
        "bidi_control.csv": (
            head
            + good
            + "evil\u202e@example.org,,,\n"
            + "zw\u200bj@example.org,,,\n"
            + "bell@example.org,Ring\x07Ring,,\n"
            + "rlo@example.org,\u202eredaS\u202c,,\n"  # shown reversed; text is allowed
            + "esc@example.org,\x1b[31mred,,\n"
            + "ls@example.org,Line\u2028Sep,,\n"
        ).encode(),
        "huge_cells.csv": (
            head
            + good
            + "long@example.org,"
            + "N" * 10_000
            + ",,\n"
            + "a" * 10_000
            + "@example.org,,,\n"
            + "tz@example.org,,"
            + "Z" * 10_000
            + ",\n"
            + "se@example.org,,,"
            + "s " * 5_000
            + "\n"
        ).encode(),
        # One cell longer than the csv module's field limit (131,072): the reader gives up there.
        "field_limit.csv": (head + good + 'big@example.org,"' + "x" * 140_000 + '",,\n').encode(),
        "unbalanced_quote.csv": (
            head + good + 'q@example.org,"Never closed,,\nz@example.org,,,\n'
        ).encode(),
        "quoted_newlines.csv": (
            head
            + good
            + 'nl@example.org,"Two\nLines",,\n'
            + 'n2@example.org,"A ""quoted"" name",,\n'
        ).encode(),
        "ragged_rows.csv": (
            head
            + good
            + "short@example.org\n"
            + "long@example.org,A,UTC,,,,,,,extra,cells\n"
            + ",,,\n"
        ).encode(),
        "formulas.csv": (
            head + good + 'f@example.org,"=HYPERLINK(""http://x"")",,\n+g@example.org,@SUM(1),,\n'
        ).encode(),
        "odd_addresses.csv": (
            head
            + good
            + "a@b,,,\n"
            + "@example.org,,,\n"
            + "a@@example.org,,,\n"
            + "<x@example.org>,,,\n"
            + '"quoted local"@example.org,,,\n'
            + "ü@exämple.org,,,\n"
            + "ANN@EXAMPLE.ORG,Dup by case,,\n"
            + " bo@example.org ,Dup with spaces,,\n"
        ).encode(),
        "odd_zones.csv": (
            head
            + good
            + "".join(
                f"z{i}@example.org,,{zone},\n"
                for i, zone in enumerate(
                    [
                        "../../etc/passwd",
                        "/UTC",
                        "Europe",
                        "zone.tab",
                        "Etc/../UTC",
                        "UTC/",
                        "+05:00",
                    ]
                )
            )
        ).encode(),
        "unknown_series.csv": (head + good + "s@example.org,,,no-such-series;other\n").encode(),
        "empty.csv": b"",
        "only_bom.csv": b"\xef\xbb\xbf",
        "blank_lines.csv": b"\n\n\n" + head.encode() + "".join(f"{e}\n" for e in GOOD).encode(),
        "header_only.csv": head.encode(),
        "no_email_header.csv": b"name,timezone\nAnn,UTC\n",
        "binary.csv": bytes(range(256)) * 4,
    }
    return files


# Series folders: {name: {file: bytes}}; EXPECT holds "file:line" for each problem expected.
_YAML = 'slug: broken\ntitle: Broken\nsend_day: tuesday\nsend_time: "09:00"\nparts:\n  - 01-a.md\n'
_PART = b"---\ntitle: A\nsummary: S\n---\nBody text.\n"


def series_folders() -> dict[str, dict[str, bytes]]:
    y = _YAML
    return {
        "tabs": {
            "series.yaml": y.replace("title: Broken", "title: Broken\n\tx: 1").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:3",
        },
        "not_a_mapping": {
            "series.yaml": b"- slug\n- title\n",
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:1",
        },
        "scalar": {
            "series.yaml": b"just some text\n",
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:1",
        },
        "empty": {"series.yaml": b"", "01-a.md": _PART, "EXPECT": b"series.yaml:1"},
        "nul": {
            "series.yaml": (y + "description: a\x00b\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7",
        },
        "invalid_utf8": {
            "series.yaml": y.encode() + b"description: caf\xe9\n",
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7",
        },
        "billion_laughs": {
            "series.yaml": (
                y
                + 'description: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                + "order: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                + "cadence: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            ).encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7\nseries.yaml:8\nseries.yaml:9",
        },
        "deep_nesting": {
            "series.yaml": (y + "description: " + "[" * 3000 + "]" * 3000 + "\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:1",
        },
        "recursive_alias": {
            "series.yaml": y.replace("parts:\n  - 01-a.md\n", "parts: &p [01-a.md, *p]\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:5",
        },
        "python_tag": {
            "series.yaml": (y + "description: !!python/object/apply:os.system [ls]\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7",
        },
        "huge_order": {
            "series.yaml": (y + "order: 99999999999999999999999999\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7",
        },
        "unicode_digit_order": {
            "series.yaml": (y + "order: \u00b2\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7",
        },
        "bad_time_and_day": {
            "series.yaml": y.replace('"09:00"', "25:61").replace("tuesday", "2027-02-30").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:3\nseries.yaml:4",
        },
        "sexagesimal_and_date": {
            "series.yaml": y.replace('"09:00"', "9:30")
            .replace("title: Broken", "title: 2027-02-30")
            .encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:4",
        },
        "duplicate_keys": {
            "series.yaml": (y + "slug: again\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7",
        },
        "non_string_keys": {
            "series.yaml": (y + "? [a, b]\n: 1\n123: 4\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7\nseries.yaml:9",
        },
        "parts_mapping": {
            "series.yaml": y.replace("  - 01-a.md", "  a: 01-a.md").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:5",
        },
        "long_part_name": {
            "series.yaml": y.replace("01-a.md", "x" * 300 + ".md").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:6",
        },
        "path_traversal": {
            "series.yaml": y.replace("01-a.md", "../../etc/passwd").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:6",
        },
        "control_in_title": {
            "series.yaml": y.replace("title: Broken", 'title: "Bro\\x07ken"').encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:2",
        },
        "surrogate_escape": {
            "series.yaml": (y + 'description: "\\ud800"\n').encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7",
        },
        "multi_document": {
            "series.yaml": (y + "---\nslug: other\n").encode(),
            "01-a.md": _PART,
            "EXPECT": b"series.yaml:7",
        },
        "crlf_and_cr": {
            "series.yaml": y.replace("\n", "\r\n").replace("Broken", "Bro ken:").encode(),
            "01-a.md": _PART.replace(b"\n", b"\r"),
            "EXPECT": b"series.yaml:2",
        },
        # Markdown parts
        "part_nul_body": {
            "series.yaml": y.encode(),
            "01-a.md": _PART + b"Bad \x00 byte\n",
            "EXPECT": b"01-a.md:6",
        },
        "part_control_summary": {
            "series.yaml": y.encode(),
            "01-a.md": b'---\ntitle: A\nsummary: "S\\x1b[31m"\n---\nBody\n',
            "EXPECT": b"01-a.md:3",
        },
        "part_invalid_utf8": {
            "series.yaml": y.encode(),
            "01-a.md": _PART + b"caf\xe9\n",
            "EXPECT": b"01-a.md:6",
        },
        "part_no_front_matter": {
            "series.yaml": y.encode(),
            "01-a.md": b"Just text\n",
            "EXPECT": b"01-a.md:1",
        },
        "part_unclosed": {
            "series.yaml": y.encode(),
            "01-a.md": b"---\ntitle: A\nsummary: S\nBody\n",
            "EXPECT": b"01-a.md:1",
        },
        "part_front_matter_list": {
            "series.yaml": y.encode(),
            "01-a.md": b"---\n- title\n- summary\n---\nBody\n",
            "EXPECT": b"01-a.md:2",
        },
        "part_bad_yaml_line": {
            "series.yaml": y.encode(),
            "01-a.md": b"---\ntitle: A\nsummary: [unclosed\n---\nBody\n",
            "EXPECT": b"01-a.md:4",
        },
        "part_line_separator": {
            "series.yaml": y.encode(),
            "01-a.md": '---\ntitle: "A\u2028B"\nsummary: S\u2029T\nx: ]\n---\nBody\n'.encode(),
            "EXPECT": b"01-a.md:4",
        },
        "part_empty_body": {
            "series.yaml": y.encode(),
            "01-a.md": b"---\ntitle: A\nsummary: S\n---\n\n",
            "EXPECT": b"01-a.md:5",
        },
        "part_huge_title": {
            "series.yaml": y.encode(),
            "01-a.md": b"---\ntitle: " + b"T" * 10_000 + b"\nsummary: S\n---\nB\n",
            "EXPECT": b"01-a.md:2",
        },
        "part_tabs": {
            "series.yaml": y.encode(),
            "01-a.md": b"---\ntitle: A\n\tsummary: S\n---\nB\n",
            "EXPECT": b"01-a.md:3",
        },
    }


def webhook_bodies() -> dict[str, bytes]:
    ok = {"email": "ann@example.org", "timestamp": 1764000000, "event": "delivered"}
    return {
        "not_json.json": b"[{'single': 'quotes'}]",
        "object.json": json.dumps(ok).encode(),
        "number.json": b"1e999999",
        "string.json": b'"[]"',
        "empty.json": b"",
        "deep_nesting.json": b"[" * 5_000 + b"]" * 5_000,
        "invalid_utf8.json": b'[{"email": "\xff@example.org"}]',
        "utf16.json": json.dumps([ok]).encode("utf-16"),
        "bom.json": b"\xef\xbb\xbf" + json.dumps([{**ok, "sg_event_id": "bom-1"}]).encode(),
        "nan.json": b'[{"email": "a@example.org", "timestamp": NaN, "event": "open", '
        b'"sg_event_id": "nan-1"}]',
        "huge_int.json": b'[{"email": "a@example.org", "timestamp": 1' + b"0" * 4000 + b", "
        b'"event": "open", "sg_event_id": "big-1"}]',
        "huge_array.json": json.dumps([0] * 20_000).encode(),
    }


def write() -> None:
    for name, data in csv_files().items():
        path = HERE / "csv" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for folder, files in series_folders().items():
        for name, data in files.items():
            path = HERE / "series" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    for name, data in webhook_bodies().items():
        path = HERE / "webhook" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


if __name__ == "__main__":
    write()
