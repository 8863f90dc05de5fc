/** Version and commit, stamped by build.ts (`define`); "dev" when run from source. */
import packageJson from "../../package.json" with { type: "json" };

declare const XTRADER_BUILD_COMMIT: string | undefined;

export const VERSION: string = packageJson.version;
export const COMMIT: string = typeof XTRADER_BUILD_COMMIT === "string" ? XTRADER_BUILD_COMMIT : "dev";
export const VERSION_LINE = `xtrader ${VERSION} (${COMMIT})`;
