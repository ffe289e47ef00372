import { describe, expect, it } from 'vitest';
import { forTerminal, jsonForTerminal, terminalText } from '../../src/tools/terminal-text.js';

describe('text for the terminal', () => {
  it('shows C0 controls, DEL and C1 controls as \\x escapes', () => {
    expect(terminalText('<x\u001b]2;pwned\u0007@example.com>')).toBe('<x\\x1b]2;pwned\\x07@example.com>');
    expect(terminalText('a\u0000b\tc\rd\u007fe\u0080f\u009bg')).toBe('a\\x00b\\x09c\\x0dd\\x7fe\\x80f\\x9bg');
  });

  it('shows the bidirectional controls and the line and paragraph separators as \\u escapes', () => {
    const bidi = '\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u2028\u2029';
    expect(terminalText(`a${bidi}b`)).toBe('a\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c\\u2028\\u2029b');
  });

  it('reads a multi-line reply as one line, `line / line`', () => {
    expect(terminalText('550-5.1.1 first\r\n550 5.1.1 second\n')).toBe('550-5.1.1 first / 550 5.1.1 second / ');
  });

  it('leaves everything else as it is: letters of any script, symbols, backslashes', () => {
    for (const text of ['Grüße, 日本語, emoji 📬', 'C:\\path\\x1b', '→ › … ±']) expect(terminalText(text)).toBe(text);
  });

  it('escapes once: escaping escaped text changes nothing', () => {
    const once = terminalText('\u001b[2J\u202e\n\u009b');
    expect(terminalText(once)).toBe(once);
  });

  it('escapes every string of a value, keys included, and hands back the same value when nothing needs it', () => {
    const clean = { a: ['x', 1, null, { b: 'y' }] };
    expect(forTerminal(clean)).toBe(clean);
    const hostile = JSON.parse('{"k\\u001b":{"list":["\\u202e",2]},"__proto__":"\\u0007"}') as Record<string, unknown>;
    const safe = forTerminal(hostile);
    expect(safe).toEqual({ 'k\\x1b': { list: ['\\u202e', 2] }, ['__proto__']: '\\x07' });
    expect(Object.getPrototypeOf(safe)).toBe(Object.prototype);
    expect(Object.keys(hostile)).toEqual(['k\u001b', '__proto__']); // the original is untouched
  });

  it('writes the characters JSON leaves raw as \\u escapes: the same JSON value, nothing raw', () => {
    const value = { id: '<x\u001b]2;y\u0007@z>', c1: '\u009b31m', bidi: 'a\u202eb\u2066c', del: '\u007f', sep: '\u2028', text: 'Grüße' };
    const line = JSON.stringify(value);
    expect(line).toMatch(/[\u009b\u202e]/); // JSON.stringify leaves them raw
    const safe = jsonForTerminal(line);
    expect(safe).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u2028\u2029]/);
    expect(JSON.parse(safe)).toEqual(value);
    expect(safe).toContain('Grüße');
  });

  it('turns a raw CR between the tokens of a JSON text into a space, and keeps pretty-printing as it is', () => {
    const line = '{"a":1,\r"b":"x"}';
    expect(jsonForTerminal(line)).toBe('{"a":1, "b":"x"}');
    expect(JSON.parse(jsonForTerminal(line))).toEqual(JSON.parse(line));
    const pretty = JSON.stringify({ a: [1, { b: 'x' }] }, null, 2);
    expect(jsonForTerminal(pretty)).toBe(pretty);
    const hostile = JSON.stringify({ a: '\u202e' }, null, '\t');
    expect(jsonForTerminal(hostile)).toBe('{\n\t"a": "\\u202e"\n}');
  });
});
