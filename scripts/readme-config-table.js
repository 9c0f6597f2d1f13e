#!/usr/bin/env node
// Rewrites README's configuration table from the one option list (after `npm run build`).
import { readFileSync, writeFileSync } from 'node:fs';
import { optionsMarkdownTable } from '../dist/daemon/config.js';

const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const begin = '<!-- config-table:begin -->';
const end = '<!-- config-table:end -->';
const i = readme.indexOf(begin);
const j = readme.indexOf(end);
if (i < 0 || j < i) throw new Error(`README.md lacks the ${begin} … ${end} markers`);
writeFileSync(path, `${readme.slice(0, i + begin.length)}\n${optionsMarkdownTable()}\n${readme.slice(j)}`);
