"""Pixel test of an arena screenshot (binary PPM on stdin): not blank, and
at least three player markers in the client's palette colours."""
import sys

data = sys.stdin.buffer.read()
# Binary PPM: "P6 <w> <h> <max>" separated by whitespace, then RGB bytes.
fields, pos = [], 0
while len(fields) < 4:
    while data[pos:pos + 1].isspace():
        pos += 1
    end = pos
    while not data[end:end + 1].isspace():
        end += 1
    fields.append(data[pos:end])
    pos = end
pos += 1
if fields[0] != b"P6":
    sys.exit("FAIL: not a binary PPM")
w, h = int(fields[1]), int(fields[2])
px = data[pos:pos + 3 * w * h]
# The client's PALETTE (macroquad's RED, GREEN, BLUE, ...), by player id.
palette = {
    "red": (230, 41, 55), "green": (0, 228, 48), "blue": (0, 121, 241), "yellow": (253, 249, 0),
    "orange": (255, 161, 0), "purple": (200, 122, 255), "pink": (255, 109, 194), "skyblue": (102, 191, 255),
}
counts = dict.fromkeys(palette, 0)
distinct = set()
for i in range(0, len(px), 3):
    rgb = (px[i], px[i + 1], px[i + 2])
    distinct.add(rgb)
    for name, c in palette.items():
        if abs(rgb[0] - c[0]) <= 3 and abs(rgb[1] - c[1]) <= 3 and abs(rgb[2] - c[2]) <= 3:
            counts[name] += 1
# A marker is a disc of radius 14: about 600 pixels.
markers = [n for n, k in counts.items() if k >= 300]
print(f"screenshot {w}x{h}: {len(distinct)} distinct colours, marker pixels {counts}")
if len(distinct) < 4:
    sys.exit("FAIL: the screenshot is blank")
if len(markers) < 3:
    sys.exit(f"FAIL: {len(markers)} player markers {markers}, expected at least 3")
print(f"PASS: {len(markers)} player markers: {', '.join(markers)}")
