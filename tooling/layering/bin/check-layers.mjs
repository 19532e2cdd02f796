#!/usr/bin/env node
// Usage: check-layers [ROOT]   (default: the repository this file lives in). Exits 1 when a layer is crossed.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayers, formatViolations } from '../src/layering.mjs';

const root = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const violations = checkLayers(root);
if (violations.length > 0) {
  console.error(`layering check failed: ${violations.length} forbidden import(s)\n${formatViolations(violations)}`);
  process.exit(1);
}
console.log('layering check passed: every package imports only the layers below it');
