import type { UserWorkspaceConfig } from 'vitest/config';
export declare const SOURCE_CONDITION: '@pagoda/source';
export declare function pagodaProject(overrides?: UserWorkspaceConfig): UserWorkspaceConfig;
export declare function pagodaAloneProject(overrides?: UserWorkspaceConfig): UserWorkspaceConfig;
