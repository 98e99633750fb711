// Node-only additions to the public API (file storage, artifact directories, the IAB TC string decoder).
export * from './index.js';
export { FileStorage } from './node_storage.js';
export { loadTrainer, readArtifactDir } from './node_artifact.js';
export { decodeWithIab } from './node_tcf.js';
