/** Drawing helpers the canvas views share (the arena, the world). */

/** A stable colour per player id (an FNV-1a hash picks the hue). */
export function colour(id) {
  let hash = 0x811c9dc5;
  for (const char of id) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193);
  return `hsl(${(hash >>> 0) % 360} 70% 55%)`;
}

/** One straight line in the context's current stroke style. */
export function line(context, x1, y1, x2, y2) {
  context.beginPath();
  context.moveTo(x1, y1);
  context.lineTo(x2, y2);
  context.stroke();
}
