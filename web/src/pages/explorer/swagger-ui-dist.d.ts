/** The part of swagger-ui-dist's bundle the explorer uses (the package ships no types). */
declare module "swagger-ui-dist/swagger-ui-es-bundle.js" {
  export type SwaggerRequest = { url: string; method?: string; headers: Record<string, string> };
  export type SwaggerOptions = {
    spec?: object;
    url?: string;
    domNode: HTMLElement;
    deepLinking?: boolean;
    docExpansion?: "list" | "full" | "none";
    defaultModelsExpandDepth?: number;
    tryItOutEnabled?: boolean;
    displayRequestDuration?: boolean;
    filter?: boolean | string;
    persistAuthorization?: boolean;
    requestInterceptor?: (request: SwaggerRequest) => SwaggerRequest | Promise<SwaggerRequest>;
    presets?: unknown[];
    layout?: string;
  };
  export type SwaggerUI = unknown;
  type Bundle = ((options: SwaggerOptions) => SwaggerUI) & { presets: { apis: unknown } };
  const SwaggerUIBundle: Bundle;
  export default SwaggerUIBundle;
}
