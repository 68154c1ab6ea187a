#!/usr/bin/env python3
"""Writes a synthetic CRM export for the import benchmark (BENCHMARKS.md, "CRM import").

    scripts/gen-import.py ROWS > big.csv

Columns: E-mail, Name, Phone, Street, City, Postcode, Country, and an undeclared "Shoe size".
Every row is a distinct, made-up customer (deterministic: the same ROWS gives the same file), so
every row is created; nothing here is real personal data. Not committed as data: generate it.
"""
import sys

FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas"]
LAST = ["Meyer", "Schmidt", "Novak", "Rossi", "Dubois", "Jansen", "Kowalski", "Silva"]
CITIES = [("Berlin", "10115", "Germany"), ("Paris", "75001", "FR"), ("Rome", "00118", "Italy"),
          ("Vienna", "1010", "AT"), ("Lisbon", "1100-148", "Portugal")]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    out = sys.stdout
    out.write("E-mail,Name,Phone,Street,City,Postcode,Country,Shoe size\n")
    for i in range(rows):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        city, postcode, country = CITIES[i % len(CITIES)]
        out.write(f"{first.lower()}.{last.lower()}+{i}@example.com,{first} {last},"
                  f"+49 30 {1000000 + i % 9000000},Hauptstrasse {i % 200 + 1},{city},{postcode},"
                  f"{country},{36 + i % 12}\n")


if __name__ == "__main__":
    main()
