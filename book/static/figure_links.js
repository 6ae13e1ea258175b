// A click on a figure opens its full-resolution image (the PNG is stored at twice the
// resolution the page shows it at).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("figure img, div.cell_output img").forEach((img) => {
    if (img.closest("a")) return;
    const link = document.createElement("a");
    link.href = img.getAttribute("src");
    link.title = "open the full-resolution image";
    img.parentNode.insertBefore(link, img);
    link.appendChild(img);
  });
});
