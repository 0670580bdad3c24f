// The SQL layer's public API: .sql documents, standalone SELECT transforms, and the runtime hook.

export { compileSqlText, sqlReferences, type SqlCompileOptions } from './compile.js';
export { loadSqlText } from './load.js';
export { compileSelect, type CompiledSelect, type SelectOptions, type SqlTransform, type LookupBinding } from './select.js';
export { createTransform, checkTransform, transformFactory, compileLookupTable, sourceColumns, type PipelineTransform, type TransformOptions } from './runtime.js';
export { tokenize, type Token } from './lexer.js';
export { parseScript, parseSelect } from './parser.js';
export { printSelect, printExpr } from './print.js';
export { FUNCTIONS } from './functions.js';
