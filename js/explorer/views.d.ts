// The module build.mjs makes for the Explorer: every view folder's default export (its Mountable) by name.
declare module "lw:views" {
  const views: Record<string, import("../shared/view").Mountable>;
  export default views;
}
