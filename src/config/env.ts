// `${VAR}` and `${VAR:-default}` substitution in config strings; `$${` writes a literal `${`.

const REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export interface Substitution {
  value: string;
  /** Variables that were referenced but are not set and have no default. */
  missing: string[];
  /** Whether the text referenced any variable (its value may be a secret). */
  referenced: boolean;
}

export function substituteEnv(text: string, env: NodeJS.ProcessEnv): Substitution {
  const missing: string[] = [];
  let referenced = false;
  if (!text.includes('${')) return { value: text, missing, referenced };
  const value = text.replace(REF, (m, name: string | undefined, def: string | undefined) => {
    if (m === '$${') return '${';
    referenced = true;
    const v = env[name!];
    if (v !== undefined && v !== '') return v;
    if (def !== undefined) return def;
    if (v === '') return '';
    missing.push(name!);
    return m;
  });
  return { value, missing, referenced };
}
