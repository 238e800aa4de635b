export * from './constants.js';
export * from './error-response.js';
export * from './framing.js';
export * from './startup.js';
