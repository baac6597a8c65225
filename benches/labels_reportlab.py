"""The customer's plan for labels: reportlab + qrcode, vector QR codes, 1,000 labels on A4 L7160.

Run: python3 benches/labels_reportlab.py (needs `pip install reportlab qrcode`).
"""

import io
import secrets
import time

import qrcode
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def labels(sns):
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(210 * mm, 297 * mm))
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
        for r, cells in enumerate(matrix):
            for col_i, dark in enumerate(cells):
                if dark:
                    c.rect(x + 2 * mm + col_i * module, top - 2 * mm - (r + 1) * module, module, module, stroke=0, fill=1)
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
