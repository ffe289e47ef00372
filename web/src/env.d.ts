// Vite bundles the stylesheets the modules import.
declare module '*.css';
