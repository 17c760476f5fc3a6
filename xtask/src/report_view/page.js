// After everything has loaded: how many images the page has and how many did
// not decode (a test reads these attributes from `chromium --dump-dom`).
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) {
    return !img.complete || img.naturalWidth === 0;
  }).length;
  document.body.dataset.images = String(images.length);
  document.body.dataset.brokenImages = String(broken);
});
