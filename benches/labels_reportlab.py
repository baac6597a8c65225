"""The customer's plan for labels: reportlab + qrcode, vector QR codes, 1,000 labels on A4 L7160.

The QR codes are drawn as vesper draws them (crates/labels/src/layout.rs, `Qr::rectangles`):
dark modules merged into horizontal runs, equal runs of consecutive rows into one rectangle, so
the comparison is between the libraries, not between drawing methods. Compression is
on (pageCompression=1: page streams deflated), as vesper deflates its pages.

Run: python3 benches/labels_reportlab.py (needs `pip install reportlab qrcode`).
"""

import io
import secrets
import time

import qrcode
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def rectangles(matrix):
    """Dark modules as (row, col, columns, rows): horizontal runs, then equal runs of
    consecutive rows merged (the same rectangles as vesper's writer)."""
    runs = []
    for r, cells in enumerate(matrix):
        c = 0
        while c < len(cells):
            if cells[c]:
                start = c
                while c < len(cells) and cells[c]:
                    c += 1
                runs.append((r, start, c - start))
            else:
                c += 1
    open_, done, last = [], [], None
    for r, col, length in runs:
        if r != last:
            done += [o for o in open_ if o[0] + o[3] != r]
            open_ = [o for o in open_ if o[0] + o[3] == r]
            last = r
        for i, o in enumerate(open_):
            if o[1] == col and o[2] == length and o[0] + o[3] == r:
                open_[i] = (o[0], o[1], o[2], o[3] + 1)
                break
        else:
            open_.append((r, col, length, 1))
    return done + open_


def labels(sns):
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(210 * mm, 297 * mm), pageCompression=1)
    for i, sn in enumerate(sns):
        slot = i % 21
        if i and slot == 0:
            c.showPage()
        col, row = slot % 3, slot // 3
        x = 7.25 * mm + col * 66.04 * mm
        top = 297 * mm - 15.15 * mm - row * 38.1 * mm
        qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
        qr.add_data(sn)
        qr.make()
        matrix = qr.get_matrix()
        module = 25 * mm / len(matrix)
        for r, col_i, columns, rows in rectangles(matrix):
            c.rect(x + 2 * mm + col_i * module, top - 2 * mm - (r + rows) * module,
                   columns * module, rows * module, stroke=0, fill=1)
        c.setFont("Helvetica-Bold", 11)
        c.drawString(x + 2 * mm, top - 34 * mm, sn)
        c.setFont("Helvetica", 9)
        c.drawString(x + 30 * mm, top - 8 * mm, "HW type BC")
        c.drawString(x + 30 * mm, top - 13 * mm, "HW version 02")
        c.setFont("Helvetica", 7)
        c.drawString(x + 30 * mm, top - 18 * mm, "Batch B-0042")
    c.save()
    return out.getvalue()


def main():
    sns = ["PV-26A18-BC02R-" + "".join(secrets.choice(ALPHABET) for _ in range(5)) for _ in range(1000)]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        pdf = labels(sns)
        best = min(best, time.perf_counter() - start)
    print(f"reportlab + qrcode, 1000 labels on A4 L7160 ({len(pdf) // 1024} KB): {best:.3f} s (best of 3)")


if __name__ == "__main__":
    main()
