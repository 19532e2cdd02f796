export interface LayerViolation {
  file: string;
  line: number;
  message: string;
}
export interface WorkspaceProject {
  name: string;
  dir: string;
  kind: 'package' | 'app' | 'tooling';
  manifest: Record<string, unknown>;
}
export declare const layerRules: Readonly<Record<string, readonly string[]>>;
export declare function listWorkspaceProjects(rootDir: string): WorkspaceProject[];
export declare function checkLayers(rootDir: string): LayerViolation[];
export declare function formatViolations(violations: readonly LayerViolation[]): string;
